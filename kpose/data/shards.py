"""Reading a shard folder (``tfrecord:DIR``) into the readers' in-memory tables.

The tables are the ones every reader produces (`Instances` for top-down,
`ImageRecords` for bottom-up), read from the folder's annotations file, so
training, validation, evaluation and plots take them as they take a COCO
file's. Only where the pixels come from differs: `image_paths` (and
`ignore_paths`) hold references into the shards (kpose.data.shard_refs); the
tf.data pipelines stream the shard files and join each record to its rows by
image id (kpose.data.shard_stream), and single images are read with one seek.

A person trains when iscrowd == 0 and num_keypoints > 0 (see
kpose.data.tfrecords); the rows come out in the order the source reader gave
them, with the same values, skip counts and ignore regions.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np

from kpose.data.coco import head_sizes_from_keypoints, log_summary
from kpose.data.coco_images import EXPECTED_IMAGE_SKIPS
from kpose.data.coco_scan import EXPECTED_SKIPS
from kpose.data.images import DataError
from kpose.data.records import ImageRecords, Instances
from kpose.data.shard_refs import make_ref
from kpose.data.tfrecords import INDEX, PACK_FIX, index_skeleton, read_index, shard_files
from kpose.skeletons import Skeleton

log = logging.getLogger(__name__)


class ShardSet:
    """A checked shard folder: its index, skeleton, shard files and annotations (loaded once)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).absolute()
        self.index = read_index(self.folder)
        self.skeleton: Skeleton = index_skeleton(self.index, self.folder)
        self.files = [str(p) for p in shard_files(self.folder, self.index)]
        self.ann_file = str(self.folder / self.index["annotations"])
        if not os.path.isfile(self.ann_file):
            raise DataError(f"{self.ann_file}: annotations file listed in {self.folder / INDEX} not found. "
                            f"Fix: copy the whole folder, or {PACK_FIX}.")
        try:
            with open(self.ann_file, encoding="utf-8") as f:
                data = json.load(f)
            self.images, self.annotations = data["images"], data["annotations"]
        except (ValueError, OSError, KeyError, TypeError) as e:
            raise DataError(f"{self.ann_file}: unreadable annotations file ({e!r}). Fix: {PACK_FIX}.") from None

    def image_ref(self, image: dict) -> str:
        """The reference to an image entry's encoded bytes."""
        return self._ref(image, "kpose_image")

    def ignore_ref(self, image: dict) -> str:
        """The reference to an image entry's ignore mask; '' when it has none."""
        return self._ref(image, "kpose_ignore") if image.get("kpose_ignore") else ""

    def _ref(self, image: dict, field: str) -> str:
        try:
            offset, length = image[field]
            return make_ref(self.files[int(image["kpose_shard"])], offset, length)
        except (KeyError, ValueError, TypeError, IndexError):
            raise DataError(f"{self.ann_file}: image {image.get('id')!r} has no valid '{field}' / 'kpose_shard' "
                            f"(the shard and byte range of its data). Fix: {PACK_FIX}.") from None

    def people(self) -> dict:
        """image id -> its training people, in file order (iscrowd == 0 and num_keypoints > 0)."""
        k = self.skeleton.num_keypoints
        out: dict = {}
        for a in self.annotations:
            if a.get("iscrowd") or not a.get("num_keypoints"):
                continue
            kp = np.asarray(a.get("keypoints"), np.float32)
            if kp.size != 3 * k:
                raise DataError(f"{self.ann_file}: annotation {a.get('id')!r} has {kp.size} keypoint values, the "
                                f"index's skeleton {self.skeleton.name!r} needs {3 * k}. Fix: {PACK_FIX}.")
            out.setdefault(a["image_id"], []).append((a["id"], kp.reshape(k, 3), a["bbox"], a["area"]))
        return out

    def counter(self, field: str, key: str | None = None) -> Counter:
        value = self.index.get(field) or {}
        return Counter((value.get(key) if key else value) or {})


def read_shard_instances(folder: str | os.PathLike) -> Instances:
    """The person instances (top-down) of a shard folder."""
    shards = ShardSet(folder)
    people = shards.people()
    rows = [(im, p) for im in shards.images for p in people.get(im["id"], [])]
    n, k = len(rows), shards.skeleton.num_keypoints
    keypoints = np.stack([p[1] for _, p in rows]) if n else np.zeros((0, k, 3), np.float32)
    refs = {im["id"]: shards.image_ref(im) for im in shards.images if im["id"] in people}
    result = Instances(
        image_paths=np.array([refs[im["id"]] for im, _ in rows], dtype=str),
        image_ids=np.array([im["id"] for im, _ in rows], np.int64),
        ann_ids=np.array([p[0] for _, p in rows], np.int64),
        bboxes=np.array([p[2] for _, p in rows], np.float32).reshape(n, 4),
        keypoints=keypoints,
        areas=np.array([p[3] for _, p in rows], np.float32),
        image_sizes=np.array([(im["height"], im["width"]) for im, _ in rows], np.int32).reshape(n, 2),
        head_sizes=head_sizes_from_keypoints(keypoints, shards.skeleton),
        skeleton=shards.skeleton,
        source=str(shards.folder),
        ann_file=shards.ann_file,
        skipped=shards.counter("skipped", "instances"),
    )
    log_summary(result, EXPECTED_SKIPS, log)
    return result


def read_shard_images(folder: str | os.PathLike) -> ImageRecords:
    """The images with people (bottom-up), with every person and the ignore masks, of a shard folder."""
    shards = ShardSet(folder)
    if not shards.index["complete_images"]:
        raise DataError(f"{shards.folder}: packed from {shards.index['source']!r}, which annotates single "
                        f"persons, not every person in an image, so it cannot train a bottom-up model "
                        f"(unlabelled people would be taught as background). Fix: pack a COCO-format dataset, "
                        f"or train a top-down model.")
    people = shards.people()
    images = [im for im in shards.images if im["id"] in people]
    n, k = len(images), shards.skeleton.num_keypoints
    m = max((len(people[im["id"]]) for im in images), default=0)
    keypoints = np.zeros((n, m, k, 3), np.float32)
    bboxes = np.zeros((n, m, 4), np.float32)
    areas = np.zeros((n, m), np.float32)
    ann_ids = np.full((n, m), -1, np.int64)
    for i, im in enumerate(images):
        for j, (ann_id, kp, box, area) in enumerate(people[im["id"]]):
            ann_ids[i, j], bboxes[i, j], keypoints[i, j], areas[i, j] = ann_id, box, kp, area
    result = ImageRecords(
        image_paths=np.array([shards.image_ref(im) for im in images], dtype=str),
        image_ids=np.array([im["id"] for im in images], np.int64),
        image_sizes=np.array([(im["height"], im["width"]) for im in images], np.int32).reshape(n, 2),
        keypoints=keypoints,
        num_people=np.array([len(people[im["id"]]) for im in images], np.int32),
        bboxes=bboxes, areas=areas, ann_ids=ann_ids,
        ignore_paths=np.array([shards.ignore_ref(im) for im in images], dtype=str),
        num_ignore=np.array([int(im.get("kpose_ignore_count") or 0) for im in images], np.int32),
        skeleton=shards.skeleton, source=str(shards.folder), ann_file=shards.ann_file,
        skipped=shards.counter("skipped", "images"), ignored=shards.counter("ignored"),
    )
    log_summary(result, EXPECTED_IMAGE_SKIPS, log)
    return result


def shard_image_refs(folder: str | os.PathLike) -> dict[int, str]:
    """image id -> reference of every image in a shard folder, people or not (bottom-up evaluation
    scores every image, as COCO does)."""
    shards = ShardSet(folder)
    return {int(im["id"]): shards.image_ref(im) for im in shards.images}
