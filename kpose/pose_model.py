"""PoseModel: a trained network plus everything needed to use it correctly.

The model's config (family, input size and convention, skeleton, codec and its
parameters, output channel order) is plain JSON saved beside the weights as
`kpose.json`; `kpose.load` rebuilds the network with kpose's own builder and
loads weights by layer, so no code from a model file is ever executed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kpose.codecs.heatmap import HeatmapCodec
from kpose.data.records import Instances
from kpose.skeletons import Skeleton, get_skeleton
from kpose.transforms import (DEFAULT_CROP_PADDING, affine_matrix, apply_affine, box_to_center_scale,
                              invert_affine)
from kpose.version import __version__

CONFIG_FILE = "kpose.json"
WEIGHTS_FILE = "weights.h5"

# Models take float32 RGB in 0..255 and normalise inside the graph, so every
# runtime (Keras, TFLite, TF.js, ONNX) feeds raw pixels the same way.
INPUT_CONVENTION = {"dtype": "float32", "channels": "RGB", "range": [0, 255], "layout": "NHWC",
                    "normalization": "in_graph"}


@dataclass
class Pose:
    """One person: keypoints [K, 3] = (x, y, score) in image pixels."""

    keypoints: np.ndarray
    score: float
    box: np.ndarray
    names: tuple[str, ...]

    def as_dict(self) -> dict[str, tuple[float, float, float]]:
        return {n: tuple(float(v) for v in k) for n, k in zip(self.names, self.keypoints)}


def build_network(config: dict, training_outputs: bool = False):
    """The tf_keras functional network a config describes (random weights)."""
    from kpose.models.efficientpose import build_efficientpose

    family = config["family"]
    skeleton = get_skeleton(config["skeleton"])
    if family != "efficientpose":
        raise ValueError(f"{CONFIG_FILE}: unknown model family {family!r}; known: efficientpose")
    net = build_efficientpose(
        variant=config["variant"], num_keypoints=skeleton.num_keypoints,
        num_limbs=len(skeleton.limbs), input_size=tuple(config["input_size"]),
        training_outputs=training_outputs)
    quantization = config.get("quantization")
    if quantization == "qat":
        from kpose.quantization import quantize_model
        return quantize_model(net)
    if quantization is not None:
        raise ValueError(f"{CONFIG_FILE}: unknown quantization {quantization!r}; known: qat")
    return net


# Batches of at least this many crops run as a traced graph function (see PoseModel._forward).
GRAPH_MIN_BATCH = 8


class PoseModel:
    """A network with its config; `predict` goes from an image to poses."""

    def __init__(self, keras_model, config: dict):
        self.keras_model = keras_model
        self.config = config
        self.skeleton: Skeleton = get_skeleton(config["skeleton"])
        self.codec = HeatmapCodec.from_dict(config["codec"])
        perm = config.get("output_channel_order")
        self._perm = None if perm is None else np.asarray(perm)
        self._functions: dict = {}

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.config["input_size"])

    @property
    def crop_padding(self) -> float:
        """How much a person box is grown before it is cropped: the padding it was trained with."""
        return float(self.config.get("crop_padding", DEFAULT_CROP_PADDING))

    # ---- inference -------------------------------------------------------
    def heatmaps(self, crops: np.ndarray, flip_test: bool = False) -> np.ndarray:
        """Network output for a batch of crops, channels in skeleton order.

        flip_test averages with the output for the mirrored crops, mirrored back
        (exact under kpose's pixel-centre convention: heatmap column u <-> w-1-u).
        """
        crops = np.asarray(crops, np.float32)
        if len(crops) == 0:
            h, w = self.codec.heatmap_size
            return np.zeros((0, h, w, self.skeleton.num_keypoints), np.float32)
        eager, graph = self._forward(bool(flip_test))
        return np.asarray((graph if len(crops) >= GRAPH_MIN_BATCH else eager)(crops))

    def _forward(self, flip_test: bool):
        """The network and the flip-test merge, eager and as a graph function. The graph
        runs a batch 2x faster than eager layer-by-layer calls (validation, calibration)
        but costs seconds to trace, more than a single image's eager call (kpose predict)."""
        if flip_test not in self._functions:
            from kpose._tf import keras, tf

            net, perm = self.keras_model, self._perm
            flip = tf.constant(self.skeleton.flip_index(), tf.int32)
            h, w = self.input_size

            def raw(x):
                out = net(x, training=False)
                out = out[-1] if isinstance(out, (list, tuple)) else out
                return out if perm is None else tf.gather(out, perm, axis=-1)

            def forward(x):
                if not flip_test:
                    return raw(x)
                n = tf.shape(x)[0]
                both = raw(tf.concat([x, tf.reverse(x, [2])], 0))
                mirrored = tf.gather(tf.reverse(both[n:], [2]), flip, axis=-1)
                return 0.5 * (both[:n] + mirrored)

            # An exported runtime (runtime.load_exported) computes in NumPy: no graph to trace.
            graph = (tf.function(forward, input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32)])
                     if isinstance(net, keras.Model) else forward)
            self._functions[flip_test] = (forward, graph)
        return self._functions[flip_test]

    def decode_crops(self, heatmaps: np.ndarray, matrices: np.ndarray) -> np.ndarray:
        """Heatmaps [B,h,w,K] + image->crop affines [B,2,3] -> keypoints [B,K,3] in image pixels."""
        return apply_affine(self.codec.batch_decode(heatmaps), invert_affine(matrices))

    def predict(self, image, boxes=None, padding: float | None = None, flip_test: bool = False) -> list[Pose]:
        """Poses in an image (path or HxWx3 uint8 RGB array).

        boxes: optional person boxes [[x, y, w, h], ...] in image pixels; without
        them the whole image is treated as one person's box (single-person models).
        padding: box growth before cropping (default: the model's crop_padding).
        """
        from kpose.data.images import load_image
        from kpose.transforms import warp_image

        img = load_image(image)
        h, w = img.shape[:2]
        if boxes is None:
            boxes, padding = np.array([[0, 0, w, h]], np.float64), 1.0
        padding = self.crop_padding if padding is None else padding
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ih, iw = self.input_size
        centers, scales = box_to_center_scale(boxes, iw / ih, padding)
        mats = affine_matrix(centers, scales, (ih, iw))
        crops = np.stack([warp_image(img, m, (ih, iw)) for m in mats]).astype(np.float32)
        kps = self.decode_crops(self.heatmaps(crops, flip_test), mats)
        from kpose.metrics import instance_scores
        scores = instance_scores(kps)
        return [Pose(k, float(s), b, self.skeleton.keypoints) for k, s, b in zip(kps, scores, boxes)]

    def predict_instances(self, instances: Instances, batch_size: int = 32, padding: float | None = None,
                          progress: bool = False, flip_test: bool = False) -> np.ndarray:
        """Top-down predictions [N, K, 3] for every instance box, via the tf.data eval pipeline."""
        from tqdm import tqdm

        from kpose.data.pipeline import eval_dataset

        out = np.zeros((len(instances), self.skeleton.num_keypoints, 3), np.float32)
        ds = eval_dataset(instances, self.input_size, batch_size,
                          self.crop_padding if padding is None else padding)
        steps = -(-len(instances) // batch_size)
        for crops, mats, idx in tqdm(ds, total=steps, disable=not progress, desc="predict"):
            out[idx.numpy()] = self.decode_crops(self.heatmaps(crops, flip_test), mats.numpy())
        return out

    # ---- persistence -----------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.keras_model.save_weights(str(d / WEIGHTS_FILE))
        cfg = dict(self.config, kpose_version=__version__)
        (d / CONFIG_FILE).write_text(json.dumps(cfg, indent=2))
        return d


def model_config(family: str, variant: str, input_size, skeleton: Skeleton,
                 codec: HeatmapCodec, crop_padding: float = DEFAULT_CROP_PADDING, **extra) -> dict:
    """The JSON-able description that travels with a model."""
    return {
        "family": family, "variant": variant, "input_size": list(input_size),
        "crop_padding": float(crop_padding),
        "skeleton": skeleton.name, "keypoints": list(skeleton.keypoints),
        "flip_pairs": [list(p) for p in skeleton.flip_pairs],
        "limbs": [list(p) for p in skeleton.limbs],
        "codec": codec.to_dict(), "input": dict(INPUT_CONVENTION), **extra,
    }


def load(path: str | Path, weights: str | None = None) -> PoseModel:
    """Load a kpose run folder, a saved model folder, an official EfficientPose .h5, or an
    exported model (.tflite, .onnx, TF.js folder), which then runs in its own runtime."""
    p = Path(path)
    if p.suffix in (".tflite", ".onnx") or (p / "model.json").exists():
        from kpose.deploy.runtime import load_exported
        return load_exported(p)
    if p.is_file() and p.suffix == ".h5":
        from kpose.models.official import load_official_pose_model
        return load_official_pose_model(p)
    if p.is_dir() and not (p / CONFIG_FILE).exists() and (p / "model" / CONFIG_FILE).exists():
        p = p / "model"
    cfg_file = p / CONFIG_FILE
    if not cfg_file.exists():
        raise FileNotFoundError(f"{p}: no {CONFIG_FILE} here; pass a run folder (runs/<run>), "
                                f"a saved model folder, or an official EfficientPose .h5 file")
    config = json.loads(cfg_file.read_text())
    net = build_network(config)
    if config.get("quantization") == "qat":
        # tfmot names its input QuantizeLayer by a global counter: load by topology
        # (the QAT graph is rebuilt deterministically from the same config).
        net.load_weights(str(weights or p / WEIGHTS_FILE))
    else:
        load_weights(net, weights or p / WEIGHTS_FILE)
    return PoseModel(net, config)


def load_weights(net, path: str | Path) -> None:
    """Load an h5 weights file by layer name; every layer with weights must be in it,
    except the builder-set input normalisation (older runs saved it as a weightless layer)."""
    import h5py

    from kpose.models.efficientpose import INPUT_NORMALIZATION

    with h5py.File(path, "r") as f:
        saved = {n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]}
    fixed = {INPUT_NORMALIZATION, "quant_" + INPUT_NORMALIZATION}
    missing = [l.name for l in net.layers if l.weights and l.name not in saved and l.name not in fixed]
    if missing:
        raise ValueError(f"{path}: no weights for layers {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                         f"the file does not belong to this model config ({CONFIG_FILE})")
    net.load_weights(str(path), by_name=True)
