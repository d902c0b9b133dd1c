"""Golden traces of kpose.tracking.Tracker for the JS (and Kotlin) ports: sequences of
frames' poses in, ids and smoothed keypoints out. Imported by write_golden.py."""
from __future__ import annotations

import base64
import zlib

import numpy as np

from kpose.pose_model import Pose
from kpose.skeletons import COCO17
from kpose.tracking import PYTHON_ONLY, Tracker, TrackerConfig

# A standing COCO-17 person, 100 px tall, feet at y=0.
TEMPLATE = np.array([[0, -95], [-3, -98], [3, -98], [-7, -96], [7, -96], [-14, -80], [14, -80],
                     [-18, -60], [18, -60], [-20, -42], [20, -42], [-9, -48], [9, -48],
                     [-9, -25], [9, -25], [-9, 0], [9, 0]], np.float64)


def _arr(a: np.ndarray) -> dict:
    """float32 array as {dtype, shape, zlib_b64} (little-endian), as write_golden.arr."""
    a = np.ascontiguousarray(a, dtype=np.dtype(np.float32).newbyteorder("<"))
    return {"dtype": "float32", "shape": list(a.shape), "zlib_b64": base64.b64encode(zlib.compress(a.tobytes(), 9)).decode()}


def _person(rng, x, y, scale, score=0.8, noise=1.5, missing=()) -> np.ndarray:
    xy = TEMPLATE * scale + [x, y] + rng.normal(0, noise * scale, TEMPLATE.shape)
    s = np.clip(rng.normal(score, 0.1, 17), 0.05, 1.0)
    s[list(missing)] = 0.0
    kp = np.concatenate([xy, s[:, None]], -1)
    kp[list(missing), :2] = 0.0
    return kp.astype(np.float32)


def _frames(rng, n: int, dt_ms: float) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Three people: one walking right, one walking left past it (nearer, larger), one that
    leaves for 700 ms and comes back; a weak false pose now and then; a keypoint lost and an
    arm that jumps; one repeated timestamp."""
    frames = []
    for i in range(n):
        t = i * dt_ms if i != 12 else 11 * dt_ms  # frame 12 repeats frame 11's time
        people = [_person(rng, 40 + 9 * i, 300, 1.0, missing=(3, 4) if i % 7 == 3 else ()),
                  _person(rng, 420 - 8 * i, 350, 1.2)]
        if not 8 <= i < 8 + int(700 // dt_ms) + 1:
            far = _person(rng, 600, 200, 0.5)
            if i == 20:
                far[9, :2] += [60, 0]   # the wrist jumps more than half a person size
            people.append(far)
        if i % 5 == 2:
            people.append(_person(rng, 300, 100, 0.7, score=0.08))   # weak: never tracked
        scores = np.array([float(p[:, 2].mean()) for p in people])
        order = rng.permutation(len(people))
        frames.append((t, np.stack([people[j] for j in order]), scores[order]))
    return frames


def _run(config: TrackerConfig, frames) -> list[dict]:
    tracker = Tracker(COCO17.sigmas_array() if config.similarity == "keypoint" else None, config)
    out = []
    for t, kps, scores in frames:
        poses = [Pose(k, float(s), np.zeros(4, np.float32), COCO17.keypoints) for k, s in zip(kps, scores)]
        tracked = tracker.update(poses, t)
        out.append({"ids": [p.track_id for p in tracked], "keypoints": _arr(np.stack([p.keypoints for p in tracked]))})
    return out


def _shared(config: TrackerConfig) -> dict:
    """The settings every runtime's tracker has (Python-only ones are left at their defaults)."""
    return {k: v for k, v in config.__dict__.items() if k not in PYTHON_ONLY}


def tracking_traces() -> dict:
    rng = np.random.default_rng(20241202)
    frames = _frames(rng, 40, 1000 / 30)
    configs = {
        "keypoint, smoothed (the defaults)": TrackerConfig(),
        "keypoint, no smoothing, max 2 tracks": TrackerConfig(smoothing=False, max_tracks=2),
        "box IoU, smoothed, 300 ms max age": TrackerConfig(similarity="box", max_age_ms=300.0),
        "keypoint, strong smoothing": TrackerConfig(min_cutoff=0.3, beta=2.0, outlier=0.2, score_alpha=0.2),
    }
    inputs = [{"timestamp_ms": t, "keypoints": _arr(kps), "scores": scores.tolist()}
              for t, kps, scores in frames]
    return {"sigmas": COCO17.sigmas_array().tolist(), "frames": inputs,
            "defaults": _shared(TrackerConfig()),
            "cases": [{"name": name, "config": _shared(cfg), "expected": _run(cfg, frames)}
                      for name, cfg in configs.items()]}
