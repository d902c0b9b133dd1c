"""The in-memory form every reader produces: one row per person instance, columnar.

Readers (COCO, MPII, synthetic) return an `Instances`; the tf.data pipeline,
evaluation and plots consume it. Keypoints are (x, y, v) in *image pixel*
coordinates of the stored image file, pixel centres at integer positions
(see kpose.transforms for the convention); v is 0 = not labelled, 1 = labelled
but occluded, 2 = labelled and visible (COCO's flags).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from kpose.skeletons import Skeleton


@dataclass
class Instances:
    """Person instances of one dataset split.

    image_paths: [N] str, the file each instance's pixels come from.
    image_ids:   [N] int64, COCO image id (or a stable synthetic id).
    ann_ids:     [N] int64, COCO annotation id (or a stable synthetic id).
    bboxes:      [N, 4] float32, (x, y, w, h) in image pixels.
    keypoints:   [N, K, 3] float32, (x, y, v) in image pixels.
    areas:       [N] float32, the OKS area (COCO `area`; segmentation area).
    image_sizes: [N, 2] int32, (height, width) of the image.
    head_sizes:  [N] float32, PCKh normaliser (MPII), NaN when unknown.
    skeleton:    the keypoint layout of `keypoints`.
    source:      human-readable origin, e.g. the annotation file path.
    ann_file:    a COCO-format JSON holding these instances' ground truth, used by
                 pycocotools evaluation (readers of other formats write one).
    skipped:     reason -> count of instances or images that were dropped, so that
                 bad input is reported rather than silently lost.
    """

    image_paths: np.ndarray
    image_ids: np.ndarray
    ann_ids: np.ndarray
    bboxes: np.ndarray
    keypoints: np.ndarray
    areas: np.ndarray
    image_sizes: np.ndarray
    skeleton: Skeleton
    head_sizes: np.ndarray | None = None
    source: str = ""
    ann_file: str | None = None
    skipped: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        n = len(self.image_paths)
        if self.head_sizes is None:
            self.head_sizes = np.full(n, np.nan, np.float32)
        for name in ("image_ids", "ann_ids", "bboxes", "keypoints", "areas", "image_sizes", "head_sizes"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Instances from {self.source}: column {name} has "
                                 f"{len(getattr(self, name))} rows, expected {n}")
        if n and self.keypoints.shape[1:] != (self.skeleton.num_keypoints, 3):
            raise ValueError(f"Instances from {self.source}: keypoints shape {self.keypoints.shape[1:]} "
                             f"does not match skeleton {self.skeleton.name} "
                             f"({self.skeleton.num_keypoints} keypoints x 3)")

    def __len__(self) -> int:
        return len(self.image_paths)

    def select(self, index) -> "Instances":
        """A subset by boolean mask or integer index (skip counts are kept)."""
        return Instances(
            image_paths=self.image_paths[index], image_ids=self.image_ids[index],
            ann_ids=self.ann_ids[index], bboxes=self.bboxes[index],
            keypoints=self.keypoints[index], areas=self.areas[index],
            image_sizes=self.image_sizes[index], head_sizes=self.head_sizes[index],
            skeleton=self.skeleton, source=self.source, ann_file=self.ann_file,
            skipped=Counter(self.skipped),
        )

    def summary(self) -> str:
        """One line for logs: counts kept, skipped by reason, and repairs ("warning: ...")."""
        line = f"{len(self)} person instances in {len(np.unique(self.image_ids))} images from {self.source}"
        dropped = {k: v for k, v in self.skipped.items() if not k.startswith("warning:")}
        repaired = {k[len("warning:"):].strip(): v for k, v in self.skipped.items()
                    if k.startswith("warning:")}
        if dropped:
            line += (f"; skipped {sum(dropped.values())} ("
                     + ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items())) + ")")
        if repaired:
            line += "; repaired " + ", ".join(f"{k}: {v}" for k, v in sorted(repaired.items()))
        return line
