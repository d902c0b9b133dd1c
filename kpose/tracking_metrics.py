"""Tracking quality on clips with known identities: MOTA, IDF1 and ID switches (motmetrics), and
jitter, position error and lag of the tracked keypoints against the ground truth.

Matching a tracked pose with a ground-truth person (motmetrics' distance, per frame):
* keypoint: 1 - OKS (COCO's formula with the COCO-17 sigmas, over the person's labelled
  keypoints, area = the box of those keypoints, as kpose.tracking.oks takes it); a match needs
  OKS >= 1 - OKS_MAX_DISTANCE = 0.5;
* box: 1 - IoU of keypoint boxes (ground truth: labelled keypoints; tracked: keypoints scoring
  at least the tracker's keypoint_threshold); a match needs IoU >= 0.5.
Only poses with a track id are hypotheses. ID switches are counted while the person was last
in the ground truth at most `switch_window_ms` ago (the tracker's max_age_ms): a person who
comes back later needs re-identification, which kpose's tracker does not do; those are in
`switches_all`.

Jitter: the mean distance between the tracked and the true acceleration of a keypoint,
|p[t+1] - 2 p[t] + p[t-1] - (g[t+1] - 2 g[t] + g[t-1])| in pixels per frame^2, over keypoint
triples matched to the same track in all three frames. Lag: the time shift tau that best
aligns tracked with true positions, argmin over tau of mean |p(t) - g(t - tau)|^2 (least
squares, so white noise does not move the minimum).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

try:
    import motmetrics as mm
except ImportError as e:  # an optional dependency: only tracking benchmarks and tests need it
    raise ImportError("kpose.tracking_metrics needs motmetrics. Fix: pip install 'kpose[test]' "
                      "(or pip install motmetrics)") from e

from kpose.data.synthetic.clips import Clip, FrameGT
from kpose.pose_model import Pose, keypoint_extent
from kpose.skeletons import COCO17
from kpose.tracking import KEYPOINT, Tracker, iou, keypoint_box

OKS_MAX_DISTANCE = 0.5
IOU_MAX_DISTANCE = 0.5
MOT_METRICS = ("mota", "idf1", "num_switches", "num_false_positives", "num_misses", "num_objects",
               "precision", "recall", "mostly_tracked", "num_unique_objects", "num_fragmentations", "motp")


def labelled_boxes(keypoints: np.ndarray, threshold: float) -> np.ndarray:
    """[N, 4] (x0, y0, x1, y1) around the keypoints [N, K, 3] whose third value is >= threshold
    (zeros for a pose with none): the tracker's keypoint box of each pose."""
    return np.array([keypoint_box(k, threshold) for k in keypoints], np.float64).reshape(-1, 4)


def oks_matrix(gt: np.ndarray, pred: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """[G, P] OKS of predictions [P, K, 3] against ground truth [G, K, 3] (v > 0: labelled)."""
    lab = gt[..., 2] > 0
    box = labelled_boxes(gt, 0.5)
    area = np.maximum((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]), 1.0)
    d2 = np.sum((gt[:, None, :, :2] - pred[None, :, :, :2]) ** 2, -1)
    e = np.exp(-d2 / (2.0 * area[:, None, None] * (2.0 * np.asarray(sigmas)) ** 2))
    return (e * lab[:, None]).sum(-1) / np.maximum(lab.sum(-1), 1)[:, None]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[A, B] IoU of (x0, y0, x1, y1) boxes, as the tracker's box similarity computes it."""
    return np.array([[iou(x, y) for y in b] for x in a], np.float64).reshape(len(a), len(b))


def distances(gt: np.ndarray, pred: np.ndarray, similarity: str, threshold: float = 0.3,
              sigmas: np.ndarray | None = None) -> np.ndarray:
    """motmetrics' [G, P] distance matrix: 1 - OKS or 1 - IoU, NaN (no match) beyond the maximum."""
    if similarity == KEYPOINT:
        d, cap = 1.0 - oks_matrix(gt, pred, COCO17.sigmas_array() if sigmas is None else sigmas), OKS_MAX_DISTANCE
    else:
        d, cap = 1.0 - iou_matrix(labelled_boxes(gt, 0.5), labelled_boxes(pred, threshold)), IOU_MAX_DISTANCE
    return np.where(d <= cap, d, np.nan)


@dataclass
class ClipTracking:
    """One clip's tracking, evaluated. acc / acc_all: motmetrics accumulators with ID switches
    counted within the switch window / at any gap. gt [F, T, K, 3]: ground truth per GT track
    (NaN where absent); pred [F, T, K, 3]: the tracked pose matched to it (NaN where none);
    hyp [F, T]: that pose's track id (-1: none). Tracks in the order of `track_ids`."""

    name: str
    fps: float
    acc: "mm.MOTAccumulator"
    acc_all: "mm.MOTAccumulator"
    track_ids: np.ndarray
    gt: np.ndarray
    pred: np.ndarray
    hyp: np.ndarray


def evaluate_clip(clip: Clip, tracked: list[list], similarity: str = KEYPOINT, threshold: float = 0.3,
                  switch_window_ms: float = 1000.0, min_gt_keypoints: int = 4,
                  smoothed: list[list] | None = None) -> ClipTracking:
    """Score a clip's tracked poses (one list of Pose per frame, COCO-17 keypoints).

    smoothed: the same tracking's smoothed output (same track ids); `pred`, hence jitter and
    lag, then comes from it while the matching uses `tracked` (see evaluate_tracker).

    Ground-truth people with fewer than `min_gt_keypoints` labelled keypoints (a sliver at the
    frame's edge) are ignored, as MOTChallenge ignores barely visible people: not objects, and
    a tracked pose that matches only such a person is no false positive. Otherwise a person
    coming back into view would be "seen" by the ground truth a frame before any tracker can
    match it (kpose.tracking's OKS needs 4 keypoints), and its new id would count as a switch."""
    if len(tracked) != len(clip.frames):
        raise ValueError(f"{clip.name}: {len(tracked)} frames of tracked poses for {len(clip.frames)} frames")
    window = switch_window_ms * clip.fps / 1000.0  # frame ids are frame indices
    acc, acc_all = mm.MOTAccumulator(max_switch_time=window), mm.MOTAccumulator()
    track_ids = np.unique(np.concatenate([f.track_ids for f in clip.frames] + [np.zeros(0, np.int64)]))
    col = {int(t): i for i, t in enumerate(track_ids)}
    k = COCO17.num_keypoints
    n, tn = len(clip.frames), len(track_ids)
    gt, pred = np.full((n, tn, k, 3), np.nan), np.full((n, tn, k, 3), np.nan)
    hyp = np.full((n, tn), -1, np.int64)
    for i, (frame, poses) in enumerate(zip(clip.frames, tracked)):
        poses = [p for p in poses if p.track_id is not None]
        hyps = np.array([p.track_id for p in poses], np.int64)
        kps = np.array([p.keypoints for p in poses], np.float64).reshape(-1, k, 3)
        keep = (frame.keypoints[..., 2] > 0).sum(-1) >= min_gt_keypoints
        d_all = distances(frame.keypoints.astype(np.float64), kps, similarity, threshold)
        d = d_all[keep]
        on_ignored = np.isfinite(d_all[~keep]).any(0) & ~np.isfinite(d).any(0)
        hyps, d = hyps[~on_ignored], d[:, ~on_ignored]
        for a in (acc, acc_all):
            a.update(frame.track_ids[keep].tolist(), hyps.tolist(), d, frameid=i)
        for t, kp in zip(frame.track_ids[keep], frame.keypoints[keep]):
            gt[i, col[int(t)]] = np.where(kp[:, 2:] > 0, kp, np.nan)
    events = acc.mot_events
    matched = events[events.Type.isin(["MATCH", "SWITCH"])]
    for (i, _), row in matched.iterrows():
        t, h = col[int(row.OId)], int(row.HId)
        pose = next(p for p in (tracked if smoothed is None else smoothed)[i] if p.track_id == h)
        hyp[i, t] = h
        pred[i, t] = np.where(pose.keypoints[:, 2:] > 0, pose.keypoints, np.nan)
    return ClipTracking(clip.name, clip.fps, acc, acc_all, track_ids, gt, pred, hyp)


def mot_summary(results: list[ClipTracking]) -> dict:
    """motmetrics over all clips together (its OVERALL row) plus `switches_all`."""
    mh = mm.metrics.create()
    names = [r.name for r in results]
    df = mh.compute_many([r.acc for r in results], metrics=list(MOT_METRICS), names=names, generate_overall=True)
    df_all = mh.compute_many([r.acc_all for r in results], metrics=["num_switches"], names=names,
                             generate_overall=True)
    out = {m: float(df.loc["OVERALL", m]) for m in MOT_METRICS}
    out["switches_all"] = float(df_all.loc["OVERALL", "num_switches"])
    return out


def _size(gt: np.ndarray) -> np.ndarray:
    """Person size per [..., K, 3] ground truth: the diagonal of its labelled keypoints' box."""
    ok = (gt[..., 2:] > 0) & np.isfinite(gt[..., :2])
    lo = np.where(ok, gt[..., :2], np.inf).min(-2)
    hi = np.where(ok, gt[..., :2], -np.inf).max(-2)
    with np.errstate(invalid="ignore"):  # inf - inf: a frame without the person gives NaN
        d = hi - lo
    return np.where(np.isfinite(d).all(-1), np.hypot(d[..., 0], d[..., 1]), np.nan)


def motion_errors(results: list[ClipTracking]) -> dict:
    """Jitter (px / frame^2, and % of person size), the tracked and the true acceleration, and
    the position error (px, % of person size), over keypoints matched to a track."""
    jit, jit_rel, acc_p, acc_g, err, err_rel = [], [], [], [], [], []
    for r in results:
        g, p = r.gt[..., :2], r.pred[..., :2]
        size = _size(r.gt)                                                # [F, T]
        same = (r.hyp[:-2] == r.hyp[1:-1]) & (r.hyp[1:-1] == r.hyp[2:]) & (r.hyp[1:-1] >= 0)
        ag, ap = g[2:] - 2 * g[1:-1] + g[:-2], p[2:] - 2 * p[1:-1] + p[:-2]
        e = np.linalg.norm(ap - ag, axis=-1)                               # NaN unless all six exist
        ok = same[..., None] & np.isfinite(e)
        jit.append(e[ok])
        jit_rel.append((e / size[1:-1, :, None])[ok])
        acc_p.append(np.linalg.norm(ap, axis=-1)[ok])
        acc_g.append(np.linalg.norm(ag, axis=-1)[ok])
        d = np.linalg.norm(p - g, axis=-1)
        fin = np.isfinite(d)
        err.append(d[fin])
        err_rel.append((d / size[..., None])[fin])
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
    jit, jit_rel, acc_p, acc_g, err, err_rel = map(cat, (jit, jit_rel, acc_p, acc_g, err, err_rel))
    mean = lambda x: float(x.mean()) if x.size else float("nan")  # noqa: E731
    return {"jitter_px": mean(jit), "jitter_pct": 100 * mean(jit_rel), "accel_tracked_px": mean(acc_p),
            "accel_true_px": mean(acc_g), "error_px": mean(err), "error_pct": 100 * mean(err_rel),
            "jitter_samples": int(jit.size), "error_samples": int(err.size)}


def lag(results: list[ClipTracking], shifts: np.ndarray = np.arange(-3.0, 10.0001, 0.05)) -> dict:
    """The shift tau (frames; + = tracked behind the truth) minimising the mean squared distance
    between tracked p(t) and true g(t - tau), g linear between frames; same samples for every
    tau (those whose truth exists over the whole range of shifts). Also in ms at each clip's fps;
    lag_at_limit: the minimum is at the end of `shifts` (the lag is at least that)."""
    lo, hi = int(np.floor(shifts.min())), int(np.ceil(shifts.max()))
    sse = np.zeros(len(shifts))
    count, ms_per_frame = 0, []
    for r in results:
        n = len(r.gt)
        g, p = r.gt[..., :2], r.pred[..., :2]
        # g shifted by each whole frame s in [lo, hi + 1]: gs[s - lo][f] = g[f - s]
        gs = np.full((hi - lo + 2,) + g.shape, np.nan)
        for j, s in enumerate(range(lo, hi + 2)):
            src = np.arange(n) - s
            keep = (src >= 0) & (src < n)
            gs[j, keep] = g[src[keep]]
        ok = np.isfinite(p).all(-1) & np.isfinite(gs).all((0, -1))
        if not ok.any():
            continue
        pk, gk = p[ok], gs[:, ok]                                         # [M, 2], [S, M, 2]
        for j, tau in enumerate(shifts):
            s0 = int(np.floor(tau))
            frac = tau - s0
            # g(t - tau) between g(t - s0) and g(t - s0 - 1)
            gt_tau = (1 - frac) * gk[s0 - lo] + frac * gk[s0 + 1 - lo]
            sse[j] += np.sum((pk - gt_tau) ** 2)
        count += int(ok.sum())
        ms_per_frame += [1000.0 / r.fps] * int(ok.sum())
    if count == 0:
        return {"lag_frames": float("nan"), "lag_ms": float("nan"), "lag_samples": 0, "lag_at_limit": False}
    j = int(np.argmin(sse))
    best = float(shifts[j])
    return {"lag_frames": best, "lag_ms": best * float(np.mean(ms_per_frame)), "lag_samples": count,
            "lag_at_limit": j in (0, len(shifts) - 1)}


# --------------------------------------------------------------------------- detections and tracking


def noisy_gt_poses(frame: FrameGT, rng: np.random.Generator, noise: float = 0.02, drop: float = 0.1,
                   min_visible: int = 3, min_keypoints: int = 4) -> list[Pose]:
    """A stand-in detector from the ground truth, to measure the tracker alone: every person
    with at least `min_visible` visible (v=2) and `min_keypoints` labelled keypoints (fewer
    cannot be matched by the tracker's OKS, min_keypoints 4: such a pose at the frame's edge
    only opens a track that the next frame cannot continue), each missed with probability `drop`;
    keypoints moved by Gaussian noise of `noise` person sizes (twice that for occluded ones,
    which score 0.5; visible ones 0.9), unlabelled ones score 0."""
    out = []
    for kps in frame.keypoints:
        kps = kps.astype(np.float64)
        v = kps[:, 2]
        missed = rng.random() < drop
        size = float(np.nan_to_num(_size(kps)))
        jitter = rng.normal(0.0, noise * size, (len(kps), 2)) * np.where(v == 1, 2.0, 1.0)[:, None]
        if missed or (v == 2).sum() < min_visible or (v > 0).sum() < min_keypoints:
            continue
        xy = np.where(v[:, None] > 0, kps[:, :2] + jitter, 0.0)
        kp = np.concatenate([xy, np.select([v == 2, v == 1], [0.9, 0.5], 0.0)[:, None]], -1).astype(np.float32)
        out.append(Pose(kp, 0.9, keypoint_extent(kp[None])[0], COCO17.keypoints))
    return out


def track_poses(tracker: Tracker, poses_per_frame: list[list[Pose]], timestamps_ms: list[float]) -> list[list[Pose]]:
    """The tracker's output per frame (it is reset first: ids start from 1 for each clip)."""
    tracker.reset()
    return [tracker.update(poses, float(t)) for poses, t in zip(poses_per_frame, timestamps_ms)]


def evaluate_tracker(clips: list[Clip], detections: dict[str, list[list[Pose]]], tracker: Tracker,
                     distance: str | None = None) -> list[ClipTracking]:
    """Track each clip's detections ({clip name: poses per frame}) and score them: identities
    (motmetrics, `distance` defaulting to the tracker's similarity) on the unsmoothed tracked
    poses, motion (jitter, lag) on the tracker's own output for the same matches.

    The tracker matches raw poses, so its ids do not depend on smoothing. Matching the
    smoothed poses instead would let a lagging one drop out of the match (OKS < 0.5) exactly
    when it lags most, and measure each setting on different samples."""
    raw_tracker = with_config(tracker, smoothing=False)
    results = []
    for c in clips:
        times = [f.timestamp_ms for f in c.frames]
        raw = track_poses(raw_tracker, detections[c.name], times)
        out = track_poses(tracker, detections[c.name], times) if tracker.config.smoothing else raw
        results.append(evaluate_clip(c, raw, distance or tracker.config.similarity, tracker.config.keypoint_threshold,
                                     tracker.config.max_age_ms, smoothed=out))
    return results


def with_config(tracker: Tracker, **changes) -> Tracker:
    """A fresh tracker like `tracker` with some config fields changed."""
    return Tracker(tracker.sigmas, dataclasses.replace(tracker.config, **changes))
