"""PoseModel: a network with its config, codec and task; `predict` goes from an image to poses.

The config (family, variant, task, input size and convention, the full skeleton, codec
and its parameters) is plain JSON saved beside the weights as `kpose.json`. This module
holds inference only: it imports no training, quantisation or deployment code
(`kpose.load` in kpose.loading reads every kind of model file).

Tasks: `top_down` models see one person crop at a time (boxes given, or the whole
image); `bottom_up` models see the whole image and their codec groups the keypoints
of every person in it.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kpose._tf import keras, tf
from kpose.codecs import HeatmapCodec, LimbHeatmapCodec, PafCodec, codec_from_dict, pose_scores
from kpose.data.images import load_image
from kpose.data.pipeline import eval_dataset
from kpose.data.records import Instances
from kpose.models import BOTTOM_UP, TOP_DOWN, build_network, get_family
from kpose.skeletons import Skeleton, skeleton_from_entry
from kpose.person_boxes import (BOX_MARGIN, DETECT_EVERY_MS, DUPLICATE_SIMILARITY, add_detected, grown,
                                 needs_detection, pose_boxes)
from kpose.tracking import Tracker
from kpose.transforms import (DEFAULT_CROP_PADDING, affine_matrix, apply_affine, box_to_center_scale,
                              fit_matrix, invert_affine, pixel_scale_matrix, warp_image)
from kpose.version import __version__

CONFIG_FILE = "kpose.json"
WEIGHTS_FILE = "weights.h5"

# Models take float32 RGB in 0..255 and normalise inside the graph, so every
# runtime (Keras, TFLite, TF.js, ONNX) feeds raw pixels the same way.
INPUT_CONVENTION = {"dtype": "float32", "channels": "RGB", "range": [0, 255], "layout": "NHWC",
                    "normalization": "in_graph"}

# Batches of at least this many crops run as a traced graph function (see PoseModel._forward).
GRAPH_MIN_BATCH = 8

# Bottom-up codecs: heatmaps + one limb output, grouped into people; each owns its flip-test merge.
BOTTOM_UP_CODECS = (PafCodec, LimbHeatmapCodec)


@dataclass
class Pose:
    """One person: keypoints [K, 3] = (x, y, score) in image pixels (score 0: not found).
    track_id: the person's identity across video frames (kpose.tracking.Tracker), else None."""

    keypoints: np.ndarray
    score: float
    box: np.ndarray
    names: tuple[str, ...]
    track_id: int | None = None

    def as_dict(self) -> dict[str, tuple[float, float, float]]:
        return {n: tuple(float(v) for v in k) for n, k in zip(self.names, self.keypoints)}


def keypoint_extent(keypoints: np.ndarray) -> np.ndarray:
    """[N, 4] (x, y, w, h) boxes around the found keypoints (score > 0) of [N, K, 3] poses."""
    found = keypoints[..., 2] > 0
    xy = keypoints[..., :2]
    lo = np.where(found[..., None], xy, np.inf).min(1)
    hi = np.where(found[..., None], xy, -np.inf).max(1)
    ok = found.any(1)[:, None]
    return np.where(ok, np.concatenate([lo, hi - lo], -1), 0.0).astype(np.float32)


class PoseModel:
    """A network, its config, its codec and its task."""

    def __init__(self, network, config: dict):
        self.keras_model = network
        self.config = config
        self.task: str = config.get("task", TOP_DOWN)
        if self.task not in (TOP_DOWN, BOTTOM_UP):
            raise ValueError(f"{CONFIG_FILE}: task {self.task!r}; known: {TOP_DOWN}, {BOTTOM_UP}")
        self.skeleton: Skeleton = skeleton_from_entry(config["skeleton"])
        self.codec = codec_from_dict(config["codec"])
        if (self.task == BOTTOM_UP and not isinstance(self.codec, BOTTOM_UP_CODECS)) or \
                (self.task == TOP_DOWN and not isinstance(self.codec, HeatmapCodec)):
            raise ValueError(f"{CONFIG_FILE}: a {self.task} model cannot use a {config['codec'].get('type')} "
                             f"codec (top_down: heatmap, bottom_up: paf or limb_heatmap)")
        self._functions: dict = {}

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.config["input_size"])

    @property
    def crop_padding(self) -> float:
        """How much a person box is grown before it is cropped: the padding it was trained with."""
        return float(self.config.get("crop_padding", DEFAULT_CROP_PADDING))

    # ---- the network ------------------------------------------------------
    def heatmaps(self, crops: np.ndarray, flip_test: bool = False) -> np.ndarray:
        """Top-down network output for a batch of crops, channels in skeleton order.

        flip_test averages with the output for the mirrored crops, mirrored back
        (exact under kpose's pixel-centre convention: heatmap column u <-> w-1-u).
        """
        crops = np.asarray(crops, np.float32)
        if len(crops) == 0:
            h, w = self.codec.heatmap_size
            return np.zeros((0, h, w, self.skeleton.num_keypoints), np.float32)
        eager, graph = self._forward(bool(flip_test))
        return np.asarray((graph if len(crops) >= GRAPH_MIN_BATCH else eager)(crops))

    def maps(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bottom-up network output for a batch of model inputs: (heatmaps, limb maps), the
        limb maps being PAFs or limb heatmaps as the codec reads them."""
        heatmaps, limbs = self.keras_model(np.asarray(images, np.float32), training=False)
        return np.asarray(heatmaps, np.float32), np.asarray(limbs, np.float32)

    def _forward(self, flip_test: bool):
        """The network and the flip-test merge, eager and as a graph function. The graph
        runs a batch 2x faster than eager layer-by-layer calls (validation, calibration)
        but costs seconds to trace, more than a single image's eager call (kpose predict)."""
        if flip_test not in self._functions:
            net = self.keras_model
            flip = tf.constant(self.skeleton.flip_index(), tf.int32)
            h, w = self.input_size

            def raw(x):
                out = net(x, training=False)
                # float32 whatever the network computes in (mixed precision during training)
                return tf.cast(out[-1] if isinstance(out, (list, tuple)) else out, tf.float32)

            def forward(x):
                if not flip_test:
                    return raw(x)
                n = tf.shape(x)[0]
                both = raw(tf.concat([x, tf.reverse(x, [2])], 0))
                mirrored = tf.gather(tf.reverse(both[n:], [2]), flip, axis=-1)
                return 0.5 * (both[:n] + mirrored)

            # An exported runtime (kpose.deploy.runtime) computes in NumPy: no graph to trace.
            # No autograph: nothing here branches on a tensor, and converting costs seconds.
            graph = (tf.function(forward, input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32)],
                                 autograph=False)
                     if isinstance(net, keras.Model) else forward)
            self._functions[flip_test] = (forward, graph)
        return self._functions[flip_test]

    def decode_crops(self, heatmaps: np.ndarray, matrices: np.ndarray) -> np.ndarray:
        """Heatmaps [B,h,w,K] + image->crop affines [B,2,3] -> keypoints [B,K,3] in image pixels."""
        return apply_affine(self.codec.batch_decode(heatmaps), invert_affine(matrices))

    # ---- inference -------------------------------------------------------
    def predict(self, image, boxes=None, padding: float | None = None, flip_test: bool = False,
                detector: "PoseModel | None" = None, scales=None) -> list[Pose]:
        """Poses in an image (path or HxWx3 uint8 RGB array).

        Top-down models: boxes are person boxes [[x, y, w, h], ...] in image pixels; without
        them, the people a bottom-up `detector` model finds (each refined from its own
        crop: their keypoint boxes grown by person_boxes.BOX_MARGIN per side), else the whole
        image as one person's box. padding: box growth before
        cropping (default: the model's crop_padding for given or found boxes, 1 for the
        whole image).
        Bottom-up models: every person in the image; boxes, padding and detector do not apply.
        flip_test: average with the output for the mirrored input, mirrored back.
        scales (bottom-up): input sizes as factors of the model's (e.g. (1.0, 1.5)); the maps of
        every scale are resampled onto the largest scale's grid and averaged before grouping.
        """
        img = load_image(image)
        if self.task == BOTTOM_UP:
            if boxes is not None or padding is not None or detector is not None:
                raise ValueError("boxes/padding/detector are for top-down models; a bottom-up model finds "
                                 "every person in the whole image")
            return self._predict_bottom_up(img, flip_test, scales)
        if scales is not None:
            raise ValueError("scales are for bottom-up models; a top-down model sees each person's crop at "
                             "its input size")
        if boxes is None and detector is not None:
            if detector.task != BOTTOM_UP:
                raise ValueError(f"detector must be a bottom-up model (it finds the people); "
                                 f"got a {detector.task} model")
            found = [p.box for p in detector.predict(img) if p.box[2] > 0 and p.box[3] > 0]
            if not found:
                return []
            boxes = grown(found)
        crops, mats, boxes = self.person_crops(img, boxes, padding)
        return self.poses(self.decode_crops(self.heatmaps(crops, flip_test), mats), boxes)

    def person_crops(self, img: np.ndarray, boxes=None, padding: float | None = None):
        """Top-down inputs of an image: (crops [n, H, W, 3] float32, image->crop matrices [n, 2, 3],
        boxes [n, 4]) for each person box, or for the whole image (no growth unless `padding`)."""
        if boxes is None:
            h, w = img.shape[:2]
            boxes, padding = np.array([[0, 0, w, h]], np.float64), 1.0 if padding is None else padding
        padding = self.crop_padding if padding is None else padding
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ih, iw = self.input_size
        centers, scales = box_to_center_scale(boxes, iw / ih, padding)
        mats = affine_matrix(centers, scales, (ih, iw))
        crops = np.stack([warp_image(img, m, (ih, iw)) for m in mats]).astype(np.float32)
        return crops, mats, boxes

    def poses(self, keypoints: np.ndarray, boxes: np.ndarray) -> list[Pose]:
        """Poses of decoded top-down keypoints [n, K, 3] with their person boxes."""
        scores = pose_scores(keypoints)
        return [Pose(k, float(s), b, self.skeleton.keypoints) for k, s, b in zip(keypoints, scores, boxes)]

    def scaled_input_sizes(self, scales) -> list[tuple[int, int]]:
        """Model input sizes for scale factors of the input size, rounded to the input stride."""
        stride = get_family(self.config["family"]).input_stride
        sizes = []
        for s in scales:
            if not float(s) > 0:
                raise ValueError(f"scales must be positive factors of the input size, got {list(scales)}")
            sizes.append(tuple(max(stride, int(round(v * float(s) / stride)) * stride) for v in self.input_size))
        return sizes

    def weights_changed(self) -> None:
        """The Keras model's weights changed (training): the networks rebuilt for other input
        sizes (multi-scale predict), which hold a copy of the weights, take the new ones."""
        rebuilt = [net for key, net in self._functions.items() if isinstance(key, tuple) and key[0] == "network"]
        if rebuilt:
            weights = self.keras_model.get_weights()
            for net in rebuilt:
                net.set_weights(weights)

    def _network_at(self, input_size: tuple[int, int]):
        """The network for another input size: a copy of the weights, taken at first use, in a
        network built for it (see weights_changed)."""
        if tuple(input_size) == self.input_size:
            return self.keras_model
        if not isinstance(self.keras_model, keras.Model):
            raise ValueError("multi-scale inference rebuilds the network at other input sizes: it needs the "
                             "Keras model (kpose.load of a run or model folder), not an exported file with "
                             "one fixed input size")
        key = ("network", tuple(input_size))
        if key not in self._functions:
            net = build_network({**self.config, "input_size": list(input_size)})
            weights = self.keras_model.get_weights()
            if [w.shape for w in net.get_weights()] != [w.shape for w in weights]:
                raise ValueError(f"{self.config['family']} rebuilt at {list(input_size)} does not take this "
                                 f"model's weights (a quantised model?); predict at scales=None")
            net.set_weights(weights)
            self._functions[key] = net
        return self._functions[key]

    def _maps_at(self, img: np.ndarray, size: tuple[int, int], flip_test: bool):
        """(heatmaps, limb maps, image->input affine) of one image at one input size."""
        m = fit_matrix(img.shape[:2], size)
        x = warp_image(img, m, size).astype(np.float32)[None]
        if flip_test:
            x = np.concatenate([x, x[:, :, ::-1]])
        net = self._network_at(size)
        heatmaps, limbs = (np.asarray(o, np.float32) for o in net(x, training=False))
        if flip_test:
            back_h, back_l = self.codec.flip_back(heatmaps[1], limbs[1], self.skeleton.flip_index(), *self.skeleton.limb_flip())
            return 0.5 * (heatmaps[0] + back_h), 0.5 * (limbs[0] + back_l), m
        return heatmaps[0], limbs[0], m

    def _predict_bottom_up(self, img: np.ndarray, flip_test: bool, scales=None) -> list[Pose]:
        sizes = self.scaled_input_sizes(scales) if scales is not None else [self.input_size]
        codec = self.codec
        if len(sizes) == 1:
            if sizes[0] != self.input_size:
                codec = _codec_at(codec, sizes[0])
            heatmaps, limbs, m = self._maps_at(img, sizes[0], flip_test)
        else:
            # Every scale's maps resampled onto the grid of the largest input, then averaged.
            ref = max(sizes, key=lambda s: s[0] * s[1])
            codec = _codec_at(codec, ref)
            m = fit_matrix(img.shape[:2], ref)
            sx, sy = (float(v) for v in codec.heatmap_codec.stride)
            to_grid, from_grid = pixel_scale_matrix(1 / sx, 1 / sy), pixel_scale_matrix(sx, sy)
            heatmaps, limbs = 0.0, 0.0
            for size in sizes:
                h, p, ms = self._maps_at(img, size, flip_test)
                # this scale's grid -> its input -> the image -> the largest input -> its grid
                to_ref = to_grid @ _h3(m) @ _h3(invert_affine(ms)) @ from_grid
                heatmaps = heatmaps + warp_image(h, to_ref[:2], codec.heatmap_size)
                limbs = limbs + warp_image(p, to_ref[:2], codec.heatmap_size)
            heatmaps, limbs = heatmaps / len(sizes), limbs / len(sizes)
        kps, scores = codec.decode(heatmaps, limbs)
        kps = np.asarray(kps, np.float64).reshape(-1, self.skeleton.num_keypoints, 3)
        found = kps[..., 2] > 0
        xy = apply_affine(kps, invert_affine(m))
        kps = np.where(found[..., None], xy, 0.0).astype(np.float32)
        boxes = keypoint_extent(kps)
        return [Pose(k, float(s), b, self.skeleton.keypoints) for k, s, b in zip(kps, scores, boxes)]

    def predict_instances(self, instances: Instances, batch_size: int = 32, padding: float | None = None,
                          progress: bool = False, flip_test: bool = False) -> np.ndarray:
        """Top-down predictions [N, K, 3] for every instance box, via the tf.data eval pipeline."""
        if self.task != TOP_DOWN:
            raise ValueError("predict_instances crops person boxes: it is for top-down models")
        out = np.zeros((len(instances), self.skeleton.num_keypoints, 3), np.float32)
        ds = eval_dataset(instances, self.input_size, batch_size,
                          self.crop_padding if padding is None else padding)
        steps = -(-len(instances) // batch_size)
        for crops, mats, idx in tqdm(ds, total=steps, disable=not progress, desc="predict"):
            out[idx.numpy()] = self.decode_crops(self.heatmaps(crops, flip_test), mats.numpy())
        return out

    def track(self, frames, tracker: Tracker | None = None, flip_test: bool = False, scales=None,
              detector: "PoseModel | None" = None, detect_every_ms: float = DETECT_EVERY_MS,
              box_margin: float = BOX_MARGIN):
        """Poses with stable `track_id`s (and smoothed keypoints) for each frame of a video:
        frames are (image, timestamp_ms) pairs (kpose.data.video.read_video yields them).
        Yields a list per frame.

        Top-down models crop each frame where the people matched on the previous frame were
        (keypoint boxes grown by `box_margin` per side; kpose.person_boxes); a pose from such a
        box counts if it scores at least the tracker's min_pose_score and resembles a tracked
        person. New people come from a bottom-up `detector` (run while nobody is tracked and
        every `detect_every_ms`), else from the whole frame while nobody is tracked.
        """
        tracker = tracker or Tracker.for_skeleton(self.skeleton)
        if self.task == BOTTOM_UP:
            if detector is not None:
                raise ValueError("detector is for top-down models; a bottom-up model finds every person itself")
            for image, timestamp_ms in frames:
                yield tracker.update(self.predict(image, flip_test=flip_test, scales=scales), float(timestamp_ms))
            return
        if detector is not None and detector.task != BOTTOM_UP:
            raise ValueError(f"detector must be a bottom-up model (it finds the people); got a {detector.task} model")
        last_detection = previous = None
        for image, timestamp_ms in frames:
            img, t = load_image(image), float(timestamp_ms)
            # Only the people matched on the previous frame give boxes: a lost track's last box
            # stays where the person was and would crop the background or a passer-by.
            expected = tracker.expected_poses(t, matched_since_ms=previous) if previous is not None else []
            boxes = tracked = pose_boxes(expected, tracker.config.keypoint_threshold, box_margin)
            if detector is not None and needs_detection(len(tracked), last_detection, t, detect_every_ms):
                found = grown([p.box for p in detector.predict(img)], box_margin)
                boxes, last_detection = add_detected(tracked, found), t
            if len(boxes):
                # A box a track proposed holds that track's person or nobody: a pose there that
                # scores below min_pose_score, or resembles no track (the box is left on the
                # background or half a person), is not a detection. New people come from the
                # detector's boxes (the first len(tracked) boxes are the tracks').
                found = [p for i, p in enumerate(self.predict(img, boxes=boxes, flip_test=flip_test))
                         if p.score >= tracker.config.min_pose_score
                         and (i >= len(tracked) or tracker.resembles_any(p.keypoints, expected))]
                poses = tracker.distinct(found, DUPLICATE_SIMILARITY)
            elif detector is None:
                poses = self.predict(img, flip_test=flip_test)
            else:
                poses = []
            previous = t
            yield tracker.update(poses, t)

    # ---- persistence -----------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write weights.h5 and kpose.json into `directory` (kpose.load reads it back)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.keras_model.save_weights(str(d / WEIGHTS_FILE))
        cfg = dict(self.config, kpose_version=__version__)
        (d / CONFIG_FILE).write_text(json.dumps(cfg, indent=2))
        return d


def _h3(m: np.ndarray) -> np.ndarray:
    """[2, 3] affine -> [3, 3] homogeneous."""
    return np.vstack([np.asarray(m, np.float64), [0.0, 0.0, 1.0]])


def _codec_at(codec: PafCodec | LimbHeatmapCodec, input_size: tuple[int, int]) -> PafCodec | LimbHeatmapCodec:
    """The codec for another input size with the same stride."""
    sx, sy = (float(v) for v in codec.heatmap_codec.stride)
    grid = (int(round(input_size[0] / sy)), int(round(input_size[1] / sx)))
    return dataclasses.replace(codec, input_size=tuple(input_size), heatmap_size=grid)


def model_config(family: str, variant: str, input_size, skeleton: Skeleton, codec,
                 crop_padding: float = DEFAULT_CROP_PADDING, **extra) -> dict:
    """The JSON-able description that travels with a model; the family's task is recorded."""
    task = get_family(family).task
    config = {
        "family": family, "variant": variant, "task": task, "input_size": list(input_size),
        "skeleton": skeleton.to_dict(), "codec": codec.to_dict(), "input": dict(INPUT_CONVENTION),
    }
    if task == TOP_DOWN:
        config["crop_padding"] = float(crop_padding)
    return {**config, **extra}
