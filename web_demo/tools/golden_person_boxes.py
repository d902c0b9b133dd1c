"""Golden vectors of top-down video for the JS (and Kotlin) ports, written by the Python
reference: kpose.person_boxes.pose_boxes cases, Tracker.distinct cases, and a trace of
PoseModel.track (a top-down model, no detector: the browser and Android hold one model) with
a stand-in network that sees where its crop lies. Imported by write_golden.py.

The trace's stand-in is replayed, not re-implemented, by the ports: every network call's
heatmaps are stored in call order with the crop box Python cut, so a port that crops other
boxes, or a different number of them, fails on the boxes (and its poses cannot match)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from golden_tracking import TEMPLATE, _arr, _shared
from kpose.codecs.heatmap import HeatmapCodec
from kpose.deploy.metadata import model_metadata
from kpose.models import TOP_DOWN
from kpose.person_boxes import BOX_MARGIN, DUPLICATE_SIMILARITY, KEEP_SIZE, pose_boxes
from kpose.pose_model import Pose, PoseModel, model_config
from kpose.skeletons import COCO17
from kpose.tracking import Tracker, TrackerConfig
from kpose.transforms import apply_affine

# The ports read these from the golden file's "constants" and compare them with their own.
CONSTANTS = {"BOX_MARGIN": BOX_MARGIN, "KEEP_SIZE": KEEP_SIZE, "DUPLICATE_SIMILARITY": DUPLICATE_SIMILARITY}
NAMES = COCO17.keypoints
LOWER_BODY = list(range(11, 17))   # hips, knees, ankles


def _person(x: float, y: float, scale: float, score: float = 0.9, weak=(), weak_score: float = 0.1) -> np.ndarray:
    """A standing COCO-17 person [17, 3] (xy, score), feet at (x, y), 100 * scale px tall."""
    kp = np.concatenate([TEMPLATE * scale + [x, y], np.full((17, 1), score)], -1)
    kp[list(weak), 2] = weak_score
    return kp


def _f32(a) -> np.ndarray:
    return np.asarray(a, np.float32)


def _box(box) -> list[float]:
    """Boxes in multiples of 1/16 px: float32 holds them exactly (Kotlin's Pose.box is float)."""
    return (np.round(np.asarray(box, np.float64) * 16) / 16).tolist()


# ---------------------------------------------------------------------------
# pose_boxes

def pose_box_cases() -> list[dict]:
    rng = np.random.default_rng(20241210)
    walker = _person(100, 200, 1.1) + np.concatenate([rng.normal(0, 1.0, (17, 2)), np.zeros((17, 1))], -1)
    upper = _person(200, 220, 1.2, weak=LOWER_BODY)
    one = _person(50, 100, 1.0, weak=range(1, 17), weak_score=0.05)
    none = _person(50, 100, 1.0, score=0.1)
    point = _person(80, 150, 1.0, weak=range(2, 17), weak_score=0.0)
    point[1, :2] = point[0, :2]                                    # two confident keypoints, one spot
    line = _person(30, 120, 1.0, weak=[k for k in range(17) if k not in (0, 5, 11, 15)])
    line[[0, 5, 11, 15], 0] = 30.0                                  # a vertical line: no width
    at = _person(150, 90, 0.8, weak=range(4, 17), weak_score=0.29)
    at[:4, 2] = np.float32(0.3)                                     # float32(0.3) >= 0.3: counts
    specs = [
        ("margin grows the keypoint box; KEEP_SIZE does not bind", [(walker, [70, 80, 60, 130])], 0.3, BOX_MARGIN, KEEP_SIZE),
        ("lower body weak: the crop shrinks to KEEP_SIZE of the last box, no further",
         [(upper, [150, 80, 110, 160])], 0.3, BOX_MARGIN, KEEP_SIZE),
        ("fewer than two confident keypoints, or two at one spot: no box (the others keep their order)",
         [(one, [0, 0, 100, 120]), (walker, [70, 80, 60, 130]), (none, [0, 0, 100, 120]),
          (point, [60, 40, 40, 120]), (upper, [160, 90, 80, 100])], 0.3, BOX_MARGIN, KEEP_SIZE),
        ("a vertical line of keypoints: the width is KEEP_SIZE of the last box", [(line, [10, 20, 40, 110])],
         0.3, BOX_MARGIN, KEEP_SIZE),
        ("keypoints scoring exactly the threshold (float32 0.3) count", [(at, [120, 0, 60, 100])], 0.3,
         BOX_MARGIN, KEEP_SIZE),
        ("other threshold, margin and keep", [(walker, [70, 80, 200, 90]), (upper, [150, 80, 110, 160])],
         0.5, 0.25, 0.5),
        ("no poses", [], 0.3, BOX_MARGIN, KEEP_SIZE),
    ]
    cases = []
    for name, poses, threshold, margin, keep in specs:
        objs = [Pose(_f32(kp), 0.9, np.asarray(_box(box), np.float64), NAMES) for kp, box in poses]
        expected = pose_boxes(objs, threshold, margin, keep)
        cases.append({"name": name, "threshold": threshold, "margin": margin, "keep": keep,
                      "poses": [{"keypoints": _f32(p.keypoints).tolist(), "box": p.box.tolist()} for p in objs],
                      "expected": expected.tolist()})
    return cases


# ---------------------------------------------------------------------------
# Tracker.distinct

def distinct_cases() -> list[dict]:
    rng = np.random.default_rng(20241211)
    a = _person(100, 200, 1.0)
    a2 = a + np.concatenate([rng.normal(0, 1.5, (17, 2)), np.zeros((17, 1))], -1)   # a, from another crop
    b = _person(160, 205, 1.1)
    few = a.copy()
    few[4:, 2] = 0.1                                                # 4 confident keypoints ...
    few3 = a.copy()
    few3[3:, 2] = 0.1                                               # ... 3: OKS 0 (min_keypoints 4)
    mid = a + [14, 0, 0]                                            # half-way to `far`
    far = a + [28, 0, 0]
    specs = [
        ("two crops on one person: the weaker dropped", "keypoint", [(a2, 0.6), (b, 0.8), (a, 0.7)]),
        ("equal scores: the first kept", "keypoint", [(a2, 0.7), (a, 0.7)]),
        ("3 shared confident keypoints (min_keypoints 4): OKS 0, both kept; 4: a duplicate", "keypoint",
         [(a, 0.9), (few3, 0.5), (few, 0.4)]),
        ("a chain: compared with the kept poses only", "keypoint", [(far, 0.7), (mid, 0.8), (a, 0.9)]),
        ("box IoU", "box", [(a, 0.5), (a + [4, 0, 0], 0.9), (a + [25, 0, 0], 0.6), (b, 0.3)]),
        ("nothing", "keypoint", []),
    ]
    cases = []
    for name, similarity, poses in specs:
        config = TrackerConfig(similarity=similarity)
        tracker = Tracker(COCO17.sigmas_array(), config)
        objs = [Pose(_f32(kp), s, np.zeros(4), NAMES) for kp, s in poses]
        kept = tracker.distinct(objs, DUPLICATE_SIMILARITY)
        cases.append({"name": name, "config": _shared(config), "min_similarity": DUPLICATE_SIMILARITY,
                      "poses": [{"keypoints": _f32(p.keypoints).tolist(), "score": p.score} for p in objs],
                      "expected": [next(i for i, p in enumerate(objs) if p is k) for k in kept]})
    return cases


# ---------------------------------------------------------------------------
# PoseModel.track of a top-down model with a stand-in network

IMAGE_SIZE = (240, 320)
DT_MS = 200.0
NUM_FRAMES = 25


def scene(i: int) -> list[np.ndarray]:
    """Frame i's people [17, 3] (xy, how clearly the network sees each keypoint), 5 frames a
    second. Frame 0 is cropped whole (no previous frame) and finds A, who walks right; A's crop
    shrinks from the whole frame by at most 10% a frame, and while A's lower body is hidden
    (frames 2-4) it would shrink more. B enters from the right and passes in front of A (A's
    crop finds B on frame 11: B resembles A there). A is gone from frame 14: its crop finds B,
    who resembles no track, so the pose is dropped; A's track, not matched on frame 14, gives
    no box on frame 15 (nor later, while it lives), which is cropped whole and finds B (a new
    track). B is gone from frame 16 (its crop finds nobody: the pose is dropped); with nobody
    matched, frames 17-19 are cropped whole, and frame 19 finds C, while B's track lives on
    unmatched (no box) until frame 20.

    Without a detector at most one track is matched a frame (one whole-frame pose, or one box
    per track matched the frame before, each kept only if it resembles a track), so two crops
    never find one person here: Tracker.distinct is checked by its own cases."""
    people = []
    if i < 14:
        people.append(_person(120 + 6 * i, 225, 1.6, weak=LOWER_BODY if 2 <= i <= 4 else ()))
    if 2 <= i < 16:
        people.append(_person(290 - 14 * (i - 2), 230, 1.65))
    if i >= 19:
        people.append(_person(250 - 4 * (i - 19), 220, 1.5))
    return people


class _SceneNetwork:
    """A top-down 'network' that knows where its crops lie (PoseModel.person_crops hands it the
    image->input matrices): for each crop, Gaussians at the keypoints of the scene person
    whose keypoint centre lies nearest the crop's centre (weaker the farther off-centre it is),
    or empty maps when nobody's centre is inside the crop."""

    def __init__(self, codec: HeatmapCodec):
        self.codec, self.people, self.mats, self.calls = codec, [], None, []

    def maps(self, m: np.ndarray) -> np.ndarray:
        h, w = self.codec.input_size
        centre = np.array([(w - 1) / 2, (h - 1) / 2])
        best = None
        for person in self.people:
            xy = apply_affine(person[:, :2], m)
            d = float(np.hypot(*(xy.mean(0) - centre)))
            inside = -0.5 <= xy.mean(0)[0] <= w - 0.5 and -0.5 <= xy.mean(0)[1] <= h - 0.5
            if inside and (best is None or d < best[0]):
                best = (d, xy, person[:, 2])
        if best is None:
            return np.zeros((*self.codec.heatmap_size, len(NAMES)), np.float32)
        d, xy, seen = best
        amplitude = seen * np.exp(-(d / (0.5 * h)) ** 2)
        hm = self.codec.encode(np.concatenate([xy, np.full((len(xy), 1), 2.0)], -1))[0] * amplitude
        return (np.round(hm * 4096) / 4096).astype(np.float32)   # short mantissas: the JSON compresses

    def __call__(self, crops, training=False):
        out = np.stack([self.maps(m) for m in self.mats])
        self.calls[-1]["heatmaps"].append(out)
        return out


class _SceneModel(PoseModel):
    """PoseModel whose crops tell the stand-in network where they lie, and are recorded."""

    def person_crops(self, img, boxes=None, padding=None):
        crops, mats, boxes = super().person_crops(img, boxes, padding)
        self.keras_model.mats = mats
        self.keras_model.calls[-1]["boxes"].extend(np.asarray(boxes, np.float64).tolist())
        return crops, mats, boxes

    def predict(self, image, boxes=None, **kw):
        poses = super().predict(image, boxes=boxes, **kw)
        self.keras_model.calls[-1].update(given=boxes is not None, scores=[p.score for p in poses])
        return poses


def track_trace() -> dict:
    codec = HeatmapCodec((64, 48), (16, 12), sigma=1.5)
    config = model_config("efficientpose", "rt", codec.input_size, COCO17, codec)   # a stand-in network runs
    net = _SceneNetwork(codec)
    model = _SceneModel(net, config)
    tracker_config = TrackerConfig()
    tracker = Tracker(COCO17.sigmas_array(), tracker_config)
    covered = {"whole frame": 0, "KEEP_SIZE binds": 0, "below min_pose_score": 0, "resembles no track": 0,
               "lost track: no box": 0}

    def frames():
        for i in range(NUM_FRAMES):
            net.people = scene(i)
            net.calls.append({"boxes": [], "heatmaps": []})
            # As PoseModel.track: only the tracks matched on the previous frame give boxes.
            expected = tracker.expected_poses(i * DT_MS, matched_since_ms=(i - 1) * DT_MS) if i else []
            covered["lost track: no box"] += len(tracker.expected_poses(i * DT_MS)) - len(expected)
            loose = pose_boxes(expected, tracker_config.keypoint_threshold, keep=0.0)
            covered["KEEP_SIZE binds"] += int(not np.allclose(
                loose, pose_boxes(expected, tracker_config.keypoint_threshold)))
            covered["whole frame"] += int(len(loose) == 0)
            yield np.zeros((*IMAGE_SIZE, 3), np.uint8), i * DT_MS

    out = []
    resembles_any = tracker.resembles_any

    def counting_resembles_any(keypoints, poses):
        # Asked only of a track box's pose scoring at least min_pose_score.
        resembles = resembles_any(keypoints, poses)
        covered["resembles no track"] += int(not resembles)
        return resembles

    tracker.resembles_any = counting_resembles_any
    for i, poses in enumerate(model.track(frames(), tracker)):
        call = net.calls[i]
        heatmaps = np.concatenate(call["heatmaps"])   # one network call a frame: its boxes, or the whole frame
        if call["given"]:
            covered["below min_pose_score"] += sum(s < tracker_config.min_pose_score for s in call["scores"])
        keypoints = np.asarray([p.keypoints for p in poses], np.float32).reshape(len(poses), len(NAMES), 3)
        out.append({"timestamp_ms": i * DT_MS, "crop_boxes": call["boxes"], "heatmaps": _arr(heatmaps),
                    "expected": {"ids": [p.track_id for p in poses], "keypoints": _arr(keypoints),
                                 "boxes": [np.asarray(p.box, np.float64).tolist() for p in poses]}})
    # Every branch of the frame step happens (the whole frame again once nobody was matched).
    assert all(covered.values()) and covered["whole frame"] >= 2, covered
    stand_in = SimpleNamespace(config={"family": "stand_in", "variant": "scene"}, skeleton=COCO17, codec=codec,
                               input_size=codec.input_size, task=TOP_DOWN, crop_padding=model.crop_padding)
    return {"image_size": list(IMAGE_SIZE), "config": _shared(tracker_config), "covers": covered,
            "metadata": dict(model_metadata(stand_in), kpose_version="(any)"), "frames": out}


def person_box_vectors() -> dict:
    return {"constants": CONSTANTS, "sigmas": COCO17.sigmas_array().tolist(),
            "pose_boxes": pose_box_cases(), "distinct": distinct_cases(),
            "track": track_trace()}
