"""The in-memory forms readers produce: one row per person (`Instances`, top-down)
or one row per image with all its people (`ImageRecords`, bottom-up), columnar.

Readers (COCO, MPII, synthetic) return `Instances`; the top-down tf.data
pipeline, evaluation and plots consume it. COCO-format readers also return
`ImageRecords` for the bottom-up pipeline (kpose.data.bottom_up). Keypoints
are (x, y, v) in *image pixel* coordinates of the stored image file, pixel
centres at integer positions (see kpose.transforms for the convention); v is
0 = not labelled, 1 = labelled but occluded, 2 = labelled and visible (COCO's flags).
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


@dataclass
class ImageRecords:
    """Images of one dataset split for bottom-up training: one row per image, all its people.

    image_paths:  [N] str, the file to decode (a normalised copy when needed).
    image_ids:    [N] int64, COCO image id.
    image_sizes:  [N, 2] int32, (height, width).
    keypoints:    [N, M, K, 3] float32, (x, y, v) in image pixels of every labelled
                  person, padded with zeros (v=0) to M = the most people in one image.
    num_people:   [N] int32, how many of the M rows of each image are people.
    bboxes:       [N, M, 4] float32, (x, y, w, h) clipped to the image; zeros as padding.
    areas:        [N, M] float32, the OKS area (COCO `area`); zeros as padding.
    ann_ids:      [N, M] int64, annotation ids; -1 as padding.
    ignore_paths: [N] str, a PNG mask (uint8, 255 = ignore) of the image's size covering
                  crowd regions and people without usable keypoints; '' when the image has none.
    num_ignore:   [N] int32, how many annotations the ignore mask covers.
    skeleton, source, ann_file: as in `Instances`.
    skipped:      reason -> count of annotations (person reasons) or images (image reasons:
                  bad image, no labelled people) left out; "warning: ..." reasons are repairs.
    ignored:      reason -> count of annotations turned into ignore regions (e.g. iscrowd).
    """

    image_paths: np.ndarray
    image_ids: np.ndarray
    image_sizes: np.ndarray
    keypoints: np.ndarray
    num_people: np.ndarray
    bboxes: np.ndarray
    areas: np.ndarray
    ann_ids: np.ndarray
    ignore_paths: np.ndarray
    num_ignore: np.ndarray
    skeleton: Skeleton
    source: str = ""
    ann_file: str | None = None
    skipped: Counter = field(default_factory=Counter)
    ignored: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        n = len(self.image_paths)
        for name in ("image_ids", "image_sizes", "keypoints", "num_people", "bboxes", "areas", "ann_ids",
                     "ignore_paths", "num_ignore"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"ImageRecords from {self.source}: column {name} has "
                                 f"{len(getattr(self, name))} rows, expected {n}")
        m = self.keypoints.shape[1] if self.keypoints.ndim == 4 else -1
        if self.keypoints.shape[2:] != (self.skeleton.num_keypoints, 3):
            raise ValueError(f"ImageRecords from {self.source}: keypoints shape {self.keypoints.shape} is not "
                             f"[N, M, {self.skeleton.num_keypoints}, 3] (skeleton {self.skeleton.name})")
        for name, tail in (("bboxes", (m, 4)), ("areas", (m,)), ("ann_ids", (m,))):
            if getattr(self, name).shape[1:] != tail:
                raise ValueError(f"ImageRecords from {self.source}: column {name} has shape "
                                 f"{getattr(self, name).shape}, expected [N, {', '.join(map(str, tail))}]")
        if n and (self.num_people.min() < 0 or self.num_people.max() > m):
            raise ValueError(f"ImageRecords from {self.source}: num_people outside [0, {m}]")

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def max_people(self) -> int:
        """M: the padded people axis (the most people in one image)."""
        return int(self.keypoints.shape[1])

    def select(self, index) -> "ImageRecords":
        """A subset of images by boolean mask or integer index (counts are kept)."""
        return ImageRecords(
            image_paths=self.image_paths[index], image_ids=self.image_ids[index],
            image_sizes=self.image_sizes[index], keypoints=self.keypoints[index],
            num_people=self.num_people[index], bboxes=self.bboxes[index], areas=self.areas[index],
            ann_ids=self.ann_ids[index], ignore_paths=self.ignore_paths[index],
            num_ignore=self.num_ignore[index], skeleton=self.skeleton, source=self.source,
            ann_file=self.ann_file, skipped=Counter(self.skipped), ignored=Counter(self.ignored),
        )

    def summary(self) -> str:
        """One line for logs: images, people, ignore regions by reason, skipped and repaired."""
        line = (f"{len(self)} images with {int(self.num_people.sum())} people "
                f"(at most {int(self.num_people.max(initial=0))} in one image) from {self.source}")
        if self.ignored:
            line += (f"; {sum(self.ignored.values())} ignore regions in {int((self.num_ignore > 0).sum())} "
                     "images (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.ignored.items())) + ")")
        dropped = {k: v for k, v in self.skipped.items() if not k.startswith("warning:")}
        repaired = {k[len("warning:"):].strip(): v for k, v in self.skipped.items()
                    if k.startswith("warning:")}
        if dropped:
            line += (f"; skipped {sum(dropped.values())} ("
                     + ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items())) + ")")
        if repaired:
            line += "; repaired " + ", ".join(f"{k}: {v}" for k, v in sorted(repaired.items()))
        return line
