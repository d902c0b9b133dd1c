"""COCO person-keypoints reader for bottom-up training: one record per image, with ignore masks.

A bottom-up model sees whole images, so every person in them matters: a
person the model is not told about would be taught as background. COCO marks
such people (crowds, people too small or hidden to label) with annotations
that carry no keypoints. `read_coco_images` keeps the labelled people of each
image (the same ones, with the same repairs, as the top-down `read_coco`) and
turns every other person annotation of the image (see
`kpose.data.coco_scan`: crowd, keypoint-less, invalid keypoints or box) into
an ignore region: its segmentation (polygons or RLE, via pycocotools) where
usable, else its box. The regions of an image are merged into one PNG mask
(uint8, 255 = ignore) of the image's size, written once into
`cache_dir/ignore_masks/` and named in `ImageRecords.ignore_paths`, so tf.data
can read and warp it with the image.

Counted, never silent: images without labelled people (skipped: the
bottom-up pipeline trains on images with people), bad images (skipped, by the
reasons of `kpose.data.images`), other person annotations turned into ignore
regions (`ImageRecords.ignored`), ones without a usable segmentation or box
(skipped under their reason), regions taken from the box (a warning).
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from tqdm import tqdm

from kpose.data import image_check
from kpose.data import images as _images
from kpose.data.coco import check_scanned_images, evaluation_file, log_summary
from kpose.data.coco_scan import EXPECTED_SKIPS, CocoScan, parse_box, scan_coco
from kpose.data.images import DataError
from kpose.data.records import ImageRecords
from kpose.skeletons import COCO17, Skeleton

log = logging.getLogger(__name__)

NO_PEOPLE = "image without labelled people"
FIX_REGION_BOX = "warning: ignore region taken from the box (no usable segmentation)"
# COCO is full of images without people; the rest of EXPECTED_SKIPS become ignore regions.
EXPECTED_IMAGE_SKIPS = EXPECTED_SKIPS | {NO_PEOPLE}
# Bump when the mask rule changes: cached masks then stop matching and are redrawn.
_MASK_VERSION = 1


def ignore_region(coco: COCO, ann: dict, height: int, width: int) -> tuple[np.ndarray | None, bool]:
    """(bool mask [H, W] of an annotation's pixels, from_box); (None, False) when it has no usable shape.

    The segmentation (polygons, RLE or uncompressed RLE) is used when it decodes
    to a non-empty mask of the image's size; else the pixels the box touches
    (COCO's edge frame: x..x+w covers columns floor(x)..ceil(x+w)-1).
    """
    if ann.get("segmentation"):
        try:
            mask = mask_utils.decode(coco.annToRLE(ann))
        except Exception:  # malformed polygons/RLE: fall back to the box, counted by the caller
            mask = None
        if mask is not None and mask.shape == (height, width) and mask.any():
            return mask.astype(bool), False
    box = parse_box(ann.get("bbox"))
    if box is None or not (box[2] > 0 and box[3] > 0):
        return None, False
    x0, x1 = (int(np.clip(v, 0, width)) for v in (np.floor(box[0]), np.ceil(box[0] + box[2])))
    y0, y1 = (int(np.clip(v, 0, height)) for v in (np.floor(box[1]), np.ceil(box[1] + box[3])))
    if x1 <= x0 or y1 <= y0:
        return None, False
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = True
    return mask, True


def _mask_path(cache: Path, scan: CocoScan, image: dict) -> Path:
    st = os.stat(scan.path)
    key = f"{scan.path}|{st.st_size}|{st.st_mtime_ns}|{image['id']}|v{_MASK_VERSION}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return cache / "ignore_masks" / f"{Path(str(image['file_name'])).stem}-{digest}.png"


def _write_mask(out: Path, mask: np.ndarray) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
        mask_png(mask).save(tmp, "PNG", compress_level=1)
        os.replace(tmp, out)
    except OSError as e:
        raise DataError(f"cannot write the ignore mask {out} ({e}). "
                        f"Fix: pass cache_dir= a writable directory or set KPOSE_CACHE.") from None


def merge_ignore_regions(coco: COCO, image: dict, others: list, skipped: Counter, ignored: Counter,
                         draw: bool = True) -> tuple[np.ndarray | None, int]:
    """(union [H, W] bool of the regions, or None when not drawn; how many) for the other person
    annotations of one kept image, moving each usable one from `skipped` to `ignored`."""
    h, w = int(image["height"]), int(image["width"])
    union = np.zeros((h, w), bool) if draw else None
    count = 0
    for _, ann, reason in others:
        region, from_box = ignore_region(coco, ann, h, w)
        if region is None:
            continue  # stays counted under `reason` in skipped
        skipped[reason] -= 1
        ignored[reason] += 1
        if from_box:
            skipped[FIX_REGION_BOX] += 1
        if union is not None:
            union |= region
        count += 1
    return union, count


def mask_png(mask: np.ndarray) -> Image.Image:
    """The stored form of an ignore mask: 8-bit grey, 255 = ignore."""
    return Image.fromarray(mask.astype(np.uint8) * 255, "L")


def _ignore_mask(scan: CocoScan, image: dict, others: list, cache: Path, skipped: Counter,
                 ignored: Counter) -> tuple[str, int]:
    """(mask path or '', regions in it) for the other person annotations of one kept image."""
    out = _mask_path(cache, scan, image)
    union, count = merge_ignore_regions(scan.coco, image, others, skipped, ignored, draw=not out.is_file())
    if count == 0:
        return "", 0
    if union is not None:
        _write_mask(out, union)
    return str(out), count


def read_coco_images(ann_file: str | os.PathLike, image_dir: str | os.PathLike,
                     skeleton: Skeleton | str | None = COCO17, cache_dir: str | os.PathLike | None = None,
                     check_images: bool = True, workers: int | None = None,
                     progress: bool = True) -> ImageRecords:
    """Read a COCO keypoints file as image-level records with ignore masks (see the module docstring).

    Arguments as `kpose.data.coco.read_coco`; cache_dir also receives the ignore masks.
    """
    scan = scan_coco(ann_file, image_dir, skeleton)
    skipped, ignored = Counter(scan.skipped), Counter()
    rows: dict = {}
    for r in scan.rows:
        rows.setdefault(r[0], []).append(r)
    others: dict = {}
    for o in scan.others:
        others.setdefault(o[0], []).append(o)
    images = [im for im in scan.data["images"] if im["id"] in rows]
    skipped[NO_PEOPLE] += len(scan.data["images"]) - len(images)
    paths = [os.path.join(scan.image_dir, im["file_name"]) for im in images]
    decode, problems = check_scanned_images(scan, paths, cache_dir, check_images, workers, progress)
    bad_image_ids = set()
    kept = []
    for im, p in zip(images, paths):
        if p in problems:
            skipped[image_check.problem_reason(problems[p])] += 1
            bad_image_ids.add(im["id"])
        else:
            kept.append((im, decode[p]))
    ann_out = evaluation_file(scan, bad_image_ids, cache_dir)

    cache = Path(cache_dir) if cache_dir is not None else _images.default_cache_dir()
    masks = []
    for im, _ in tqdm(kept, desc="ignore masks", unit="img", disable=not progress):
        masks.append(_ignore_mask(scan, im, others.get(im["id"], []), cache, skipped, ignored))
    skipped = +skipped  # drop the reasons whose every annotation became an ignore region

    n, k = len(kept), scan.skeleton.num_keypoints
    m = max((len(rows[im["id"]]) for im, _ in kept), default=0)
    keypoints = np.zeros((n, m, k, 3), np.float32)
    bboxes = np.zeros((n, m, 4), np.float32)
    areas = np.zeros((n, m), np.float32)
    ann_ids = np.full((n, m), -1, np.int64)
    for i, (im, _) in enumerate(kept):
        for j, r in enumerate(rows[im["id"]]):
            ann_ids[i, j], bboxes[i, j], keypoints[i, j], areas[i, j] = r[1], r[2], r[3], r[4]
    result = ImageRecords(
        image_paths=np.array([p for _, p in kept], dtype=str),
        image_ids=np.array([im["id"] for im, _ in kept], np.int64),
        image_sizes=np.array([(int(im["height"]), int(im["width"])) for im, _ in kept], np.int32).reshape(n, 2),
        keypoints=keypoints,
        num_people=np.array([len(rows[im["id"]]) for im, _ in kept], np.int32),
        bboxes=bboxes, areas=areas, ann_ids=ann_ids,
        ignore_paths=np.array([p for p, _ in masks], dtype=str),
        num_ignore=np.array([c for _, c in masks], np.int32),
        skeleton=scan.skeleton, source=scan.path, ann_file=ann_out, skipped=skipped, ignored=ignored,
    )
    log_summary(result, EXPECTED_IMAGE_SKIPS, log)
    return result
