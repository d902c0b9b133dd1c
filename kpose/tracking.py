"""Pose tracking and smoothing for video: the reference that the browser and Android ports follow.

Tracking (the greedy pose tracking of Simple Baselines, Xiao et al. 2018): every frame's
poses are matched to the live tracks by similarity -- OKS of the new pose against the
track's last pose with the skeleton's own sigmas, or IoU of their boxes -- best pair first,
pairs below `min_similarity` left unmatched. A matched pose takes the track's id; an
unmatched pose starts a new track while fewer than `max_tracks` are live; a track not
matched for more than `max_age_ms` ends. Ids count up from 1 and are never reused.

Smoothing: a One Euro filter (Casiez et al. 2012) on every keypoint coordinate, living and
dying with its track; tracks match on the raw poses, smoothing only shapes the output. Its cutoff rises with speed (`beta`), speed measured in person sizes
per second (the size is the diagonal of the track's keypoint box), so that a far and a near
person are smoothed alike. A keypoint that jumps by more than `outlier` person sizes in one
frame restarts its filter instead of being dragged; scores get an exponential average.

Offline options (Python only; the browser and Android trackers implement the defaults):
`matching="hungarian"` assigns poses to tracks by the largest total similarity instead of best
pair first, and `motion=True` moves every track's last pose by its constant velocity to the new
frame's time before comparing (Simple Baselines propagates the previous frame's boxes the same
way to recover people a detector misses; `Tracker.expected_poses` gives them to a top-down model).

Time is in milliseconds everywhere (`timestamp_ms`), as in the browser's
requestAnimationFrame / video.currentTime * 1000 and Android's SystemClock.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from kpose.skeletons import Skeleton

KEYPOINT = "keypoint"
BOX = "box"
GREEDY = "greedy"
HUNGARIAN = "hungarian"
# TrackerConfig fields the browser and Android trackers do not have (their behaviour is these
# fields' defaults); the golden traces they are tested against leave them out.
PYTHON_ONLY = ("matching", "motion")


@dataclass(frozen=True)
class TrackerConfig:
    """Tracking and smoothing settings (one set of defaults for Python, JS and Kotlin).

    similarity: "keypoint" (OKS) or "box" (IoU). min_pose_score: weaker poses are passed
    through without a track (track_id None) and start none. keypoint_threshold: keypoints below this
    score take no part in OKS; min_keypoints: fewer shared confident keypoints give 0.
    min_cutoff (Hz), beta (per person size per second), d_cutoff (Hz): One Euro filter.
    outlier: a jump of more than this many person sizes in one frame restarts a filter.
    score_alpha: weight of the new score in the score average.
    matching: "greedy" (best pair first: every runtime) or "hungarian" (largest total
    similarity; Python only). motion: compare new poses with each track's last pose moved
    by its velocity (pixels per ms from its last two matches) to the new time (Python only).
    """

    similarity: str = KEYPOINT
    min_pose_score: float = 0.15
    min_similarity: float = 0.15
    max_tracks: int = 18
    max_age_ms: float = 1000.0
    keypoint_threshold: float = 0.3
    min_keypoints: int = 4
    smoothing: bool = True
    min_cutoff: float = 1.0
    beta: float = 10.0
    d_cutoff: float = 1.0
    outlier: float = 0.5
    score_alpha: float = 0.5
    matching: str = GREEDY
    motion: bool = False

    def __post_init__(self) -> None:
        if self.matching not in (GREEDY, HUNGARIAN):
            raise ValueError(f"matching must be {GREEDY!r} or {HUNGARIAN!r}, got {self.matching!r}")
        if self.similarity not in (KEYPOINT, BOX):
            raise ValueError(f"similarity must be {KEYPOINT!r} (OKS) or {BOX!r} (IoU), got {self.similarity!r}")
        if self.max_tracks < 1 or self.max_age_ms < 0:
            raise ValueError(f"max_tracks must be >= 1 and max_age_ms >= 0, got {self.max_tracks}, {self.max_age_ms}")
        if min(self.min_cutoff, self.d_cutoff) <= 0 or self.beta < 0:
            raise ValueError("One Euro filter: min_cutoff and d_cutoff must be > 0 Hz and beta >= 0")


def _alpha(cutoff: np.ndarray | float, dt_s: float) -> np.ndarray:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, np.float64))
    return 1.0 / (1.0 + tau / dt_s)


@dataclass
class OneEuroFilter:
    """One Euro filter over an array of values (a person's keypoint coordinates [K, 2])."""

    min_cutoff: float = 1.0
    beta: float = 10.0
    d_cutoff: float = 1.0
    value: np.ndarray | None = None
    speed: np.ndarray | None = None
    last_ms: float | None = None

    def __call__(self, x: np.ndarray, timestamp_ms: float, scale: float = 1.0,
                 restart: np.ndarray | None = None) -> np.ndarray:
        """Filtered x. scale: speeds are divided by it (person size in pixels); restart: a
        boolean mask of values whose filter starts again from x."""
        x = np.asarray(x, np.float64)
        if self.value is None or self.last_ms is None or timestamp_ms <= self.last_ms:
            # First sample, or a timestamp that does not move forward: nothing to filter against.
            self.value, self.speed, self.last_ms = x.copy(), np.zeros_like(x), float(timestamp_ms)
            return x.copy()
        dt = (float(timestamp_ms) - self.last_ms) / 1000.0
        self.last_ms = float(timestamp_ms)
        raw_speed = (x - self.value) / dt / max(float(scale), 1e-6)
        self.speed = self.speed + _alpha(self.d_cutoff, dt) * (raw_speed - self.speed)
        cutoff = self.min_cutoff + self.beta * np.abs(self.speed)
        self.value = self.value + _alpha(cutoff, dt) * (x - self.value)
        if restart is not None and restart.any():
            self.value = np.where(restart, x, self.value)
            self.speed = np.where(restart, 0.0, self.speed)
        return self.value.copy()


def keypoint_box(keypoints: np.ndarray, threshold: float) -> np.ndarray:
    """[x0, y0, x1, y1] of the keypoints scoring at least `threshold` (zeros when none)."""
    ok = keypoints[:, 2] >= threshold
    if not ok.any():
        return np.zeros(4)
    xy = keypoints[ok, :2]
    return np.concatenate([xy.min(0), xy.max(0)])


def oks(a: np.ndarray, b: np.ndarray, sigmas: np.ndarray, threshold: float, min_keypoints: int) -> float:
    """Object keypoint similarity of keypoints a and b [K, 3], area from b's keypoint box."""
    both = (a[:, 2] >= threshold) & (b[:, 2] >= threshold)
    if both.sum() < min_keypoints:
        return 0.0
    x0, y0, x1, y1 = keypoint_box(b, threshold)
    area = max((x1 - x0) * (y1 - y0), 1.0)
    d2 = np.sum((a[both, :2] - b[both, :2]) ** 2, -1)
    return float(np.mean(np.exp(-d2 / (2.0 * area * (2.0 * sigmas[both]) ** 2))))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two [x0, y0, x1, y1] boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Track:
    id: int
    pose: object
    last_ms: float
    filter: OneEuroFilter
    scores: np.ndarray
    # pixels per ms of each keypoint [K, 2] between its last two matches (0 where unknown)
    velocity: np.ndarray | None = None

    def expected(self, timestamp_ms: float, motion: bool) -> np.ndarray:
        """The track's keypoints [K, 3] at `timestamp_ms`: its last pose, moved by its
        velocity when `motion` (keypoints not found stay where they are)."""
        kp = np.asarray(self.pose.keypoints, np.float64)
        if not motion or self.velocity is None:
            return kp
        moved = kp.copy()
        moved[:, :2] += self.velocity * (float(timestamp_ms) - self.last_ms)
        return moved


@dataclass
class Tracker:
    """Stable ids and smoothed keypoints for the poses of consecutive frames.

        tracker = Tracker.for_skeleton(model.skeleton)
        for t_ms, frame in frames:
            people = tracker.update(model.predict(frame), t_ms)   # Pose objects with track_id

    sigmas: the skeleton's OKS sigmas [K] (keypoint similarity); None allows box similarity only.
    """

    sigmas: np.ndarray | None = None
    config: TrackerConfig = field(default_factory=TrackerConfig)
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1

    def __post_init__(self) -> None:
        if self.config.similarity == KEYPOINT and self.sigmas is None:
            raise ValueError("keypoint (OKS) similarity needs the skeleton's sigmas; pass "
                             "sigmas=skeleton.sigmas_array() or use TrackerConfig(similarity='box')")
        if self.sigmas is not None:
            self.sigmas = np.asarray(self.sigmas, np.float64)

    @classmethod
    def for_skeleton(cls, skeleton: Skeleton, **config) -> "Tracker":
        """A tracker for a model's skeleton: OKS with its sigmas, IoU when it has none."""
        config.setdefault("similarity", KEYPOINT if skeleton.sigmas is not None else BOX)
        return cls(skeleton.sigmas, TrackerConfig(**config))

    def reset(self) -> None:
        """Forget every track (a new video); ids start again from 1."""
        self.tracks, self.next_id = [], 1

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        """The tracker's similarity of keypoints a and b [K, 3]: OKS, or IoU of their boxes."""
        cfg = self.config
        if cfg.similarity == KEYPOINT:
            return oks(a, b, self.sigmas, cfg.keypoint_threshold, cfg.min_keypoints)
        return iou(keypoint_box(a, cfg.keypoint_threshold), keypoint_box(b, cfg.keypoint_threshold))

    def expected_poses(self, timestamp_ms: float, matched_since_ms: float | None = None) -> list:
        """The poses of the live tracks (matched at or after `matched_since_ms` when given)
        where each expects its person at `timestamp_ms`: the last raw pose (its `box` is
        where it was found), keypoints moved by the track's velocity with `motion`. A
        top-down model crops its next boxes from them (kpose.person_boxes.pose_boxes)."""
        age, motion = self.config.max_age_ms, self.config.motion
        since = -math.inf if matched_since_ms is None else float(matched_since_ms)
        return [dataclasses.replace(t.pose, keypoints=t.expected(timestamp_ms, motion).astype(np.float32))
                for t in self.tracks if timestamp_ms - t.last_ms <= age and t.last_ms >= since]

    def resembles_any(self, keypoints: np.ndarray, poses: list) -> bool:
        """Whether keypoints [K, 3] are at least min_similarity similar to one of the poses."""
        return any(self.similarity(p.keypoints, keypoints) >= self.config.min_similarity for p in poses)

    def distinct(self, poses: list, min_similarity: float) -> list:
        """The poses without duplicates: a pose at least `min_similarity` similar to a
        higher-scoring one is dropped (two crops that found the same person)."""
        kept: list = []
        for pose in sorted(poses, key=lambda p: -p.score):
            if all(self.similarity(k.keypoints, pose.keypoints) < min_similarity for k in kept):
                kept.append(pose)
        return [p for p in poses if any(p is k for k in kept)]

    def _pairs(self, poses: list, strong: list[int], timestamp_ms: float) -> dict[int, "Track"]:
        """pose index -> matched track, by the configured matching."""
        cfg = self.config
        expected = [t.expected(timestamp_ms, cfg.motion) for t in self.tracks]
        sims = np.array([[self.similarity(e, poses[pi].keypoints) for pi in strong] for e in expected],
                        np.float64).reshape(len(expected), len(strong))
        if cfg.matching == HUNGARIAN:
            rows, cols = linear_sum_assignment(np.where(sims >= cfg.min_similarity, sims, 0.0), maximize=True)
            return {strong[c]: self.tracks[r] for r, c in zip(rows, cols) if sims[r, c] >= cfg.min_similarity}
        pairs = sorted(((sims[ti, j], ti, strong[j]) for ti in range(len(expected)) for j in range(len(strong))),
                       key=lambda s: (-s[0], s[1], s[2]))
        track_of: dict[int, Track] = {}
        used: set[int] = set()
        for sim, ti, pi in pairs:
            if sim < cfg.min_similarity:
                break
            if ti in used or pi in track_of:
                continue
            used.add(ti)
            track_of[pi] = self.tracks[ti]
        return track_of

    def update(self, poses: list, timestamp_ms: float) -> list:
        """This frame's poses with `track_id` set (and smoothed keypoints), in the input order;
        a pose below min_pose_score, or one that neither matches a track nor fits under
        max_tracks, is returned as it is with track_id None."""
        cfg = self.config
        self.tracks = [t for t in self.tracks if timestamp_ms - t.last_ms <= cfg.max_age_ms]
        strong = [pi for pi, p in enumerate(poses) if p.score >= cfg.min_pose_score]
        track_of = self._pairs(poses, strong, timestamp_ms)
        out = []
        for pi, pose in enumerate(poses):
            track = track_of.get(pi)
            if track is None:
                if len(self.tracks) >= cfg.max_tracks or pose.score < cfg.min_pose_score:
                    out.append(dataclasses.replace(pose, track_id=None))
                    continue
                track = Track(self.next_id, pose, timestamp_ms,
                              OneEuroFilter(cfg.min_cutoff, cfg.beta, cfg.d_cutoff),
                              np.asarray(pose.keypoints[:, 2], np.float64).copy())
                self.next_id += 1
                self.tracks.append(track)
            out.append(self._smoothed(track, pose, timestamp_ms))
        return out

    def _smoothed(self, track: Track, pose, timestamp_ms: float):
        cfg = self.config
        kp = np.asarray(pose.keypoints, np.float64)
        if cfg.smoothing:
            x0, y0, x1, y1 = keypoint_box(kp, cfg.keypoint_threshold)
            size = max(math.hypot(x1 - x0, y1 - y0), 1.0)
            jump = np.linalg.norm(kp[:, :2] - track.pose.keypoints[:, :2], axis=-1) > cfg.outlier * size
            lost = (kp[:, 2] <= 0) | (track.pose.keypoints[:, 2] <= 0)
            restart = np.repeat((jump | lost)[:, None], 2, axis=1)
            xy = track.filter(kp[:, :2], timestamp_ms, size, restart)
            track.scores = (1 - cfg.score_alpha) * track.scores + cfg.score_alpha * kp[:, 2]
            kp = np.concatenate([xy, np.where(kp[:, 2:] > 0, track.scores[:, None], 0.0)], -1)
        # The track remembers the raw pose: matching and jump checks compare detections with
        # detections (a smoothed pose lags, and heavy smoothing would lose fast people).
        if cfg.motion and timestamp_ms > track.last_ms:
            prev = np.asarray(track.pose.keypoints, np.float64)
            both = ((prev[:, 2] > 0) & (pose.keypoints[:, 2] > 0))[:, None]
            step = (np.asarray(pose.keypoints[:, :2], np.float64) - prev[:, :2]) / (timestamp_ms - track.last_ms)
            track.velocity = np.where(both, step, 0.0)
        track.pose, track.last_ms = pose, float(timestamp_ms)
        return dataclasses.replace(pose, keypoints=kp.astype(np.float32), track_id=track.id)
