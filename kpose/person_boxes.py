"""Person boxes for a top-down model on video: where the previous frame's people were.

A top-down model needs a box per person. On video the tracker knows where each person
matched on the previous frame was (moved by its velocity with `TrackerConfig.motion`), so
those boxes crop the next frame (MoveNet crops its next frame the same way; Simple Baselines
propagates boxes to recover people its detector misses). A pose found in a track's box
counts only if it scores at least min_pose_score and resembles a tracked person: a box left
on the background or on half a passer-by starts no track. New people come from a bottom-up
`detector` model (when nobody is tracked, and every `detect_every_ms`) or, without one, from
the whole frame while nobody is tracked. Two boxes that converge on one person give two
poses; the weaker is dropped (`Tracker.distinct`). PoseModel.track runs these steps; the
browser (web_demo/src/person-boxes.js) and Android (KposeTracking.kt) ports follow them.
"""
from __future__ import annotations

import numpy as np

from kpose.tracking import iou, keypoint_box

# A keypoint box grown by this fraction of its width and height on each side: keypoints lie
# inside the body (head top, hands, feet reach past them) and the person moves between frames.
BOX_MARGIN = 0.15
# A crop box shrinks to at most this fraction of the last one per frame: when a person's
# lower body scores low (motion blur, occlusion), the confident keypoints alone would shrink
# the crop onto the head and lose the rest.
KEEP_SIZE = 0.9
# How often a detector looks for people who entered, while tracks exist (milliseconds).
DETECT_EVERY_MS = 1000.0
# A detected box overlapping a tracked one by more than this IoU is the same person.
SAME_PERSON_IOU = 0.3
# Poses at least this similar (OKS, or box IoU) to a stronger one are duplicates.
DUPLICATE_SIMILARITY = 0.7


def pose_boxes(poses: list, threshold: float, margin: float = BOX_MARGIN, keep: float = KEEP_SIZE) -> np.ndarray:
    """[n, 4] (x, y, w, h) crop boxes for the next frame from poses (`keypoints` [K, 3], `box`
    (x, y, w, h) where each was found): the box around the keypoints scoring at least
    `threshold`, grown by `margin` of its size per side, and at least `keep` times the width
    and height of the pose's own box (same centre). Poses with fewer than two such keypoints
    (no extent) give no box."""
    boxes = []
    for pose in poses:
        kp = np.asarray(pose.keypoints, np.float64)
        if int((kp[:, 2] >= threshold).sum()) < 2:
            continue
        x0, y0, x1, y1 = keypoint_box(kp, threshold)
        if x1 - x0 <= 0 and y1 - y0 <= 0:
            continue
        prev = np.asarray(pose.box, np.float64)
        w = max((x1 - x0) * (1 + 2 * margin), keep * prev[2])
        h = max((y1 - y0) * (1 + 2 * margin), keep * prev[3])
        boxes.append([(x0 + x1 - w) / 2, (y0 + y1 - h) / 2, w, h])
    return np.asarray(boxes, np.float64).reshape(-1, 4)


def grown(boxes: np.ndarray, margin: float = BOX_MARGIN) -> np.ndarray:
    """(x, y, w, h) boxes [n, 4] grown by `margin` of their size on each side: a bottom-up
    detector's person box is the extent of its keypoints, tighter than the person."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0] - margin * b[:, 2], b[:, 1] - margin * b[:, 3],
                     b[:, 2] * (1 + 2 * margin), b[:, 3] * (1 + 2 * margin)], 1)


def _corners(box: np.ndarray) -> np.ndarray:
    return np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]], np.float64)


def add_detected(tracked: np.ndarray, detected: np.ndarray, same_iou: float = SAME_PERSON_IOU) -> np.ndarray:
    """The tracked boxes [n, 4] plus each detected box [m, 4] (x, y, w, h) that overlaps
    none of them by more than `same_iou` (a person the tracks do not cover)."""
    tracked = np.asarray(tracked, np.float64).reshape(-1, 4)
    new = [d for d in np.asarray(detected, np.float64).reshape(-1, 4)
           if d[2] > 0 and d[3] > 0 and all(iou(_corners(d), _corners(t)) <= same_iou for t in tracked)]
    return np.concatenate([tracked, np.asarray(new, np.float64).reshape(-1, 4)])


def needs_detection(num_tracked: int, last_detection_ms: float | None, timestamp_ms: float,
                    detect_every_ms: float = DETECT_EVERY_MS) -> bool:
    """Whether the detector runs on this frame: nobody tracked, never run, or due again."""
    return (num_tracked == 0 or last_detection_ms is None
            or timestamp_ms - last_detection_ms >= detect_every_ms)
