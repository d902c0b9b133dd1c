"""COCO person-keypoints reader for top-down training (also OCHuman, CrowdPose-style files).

`read_coco` keeps one row per usable person annotation (see
`kpose.data.coco_scan` for what is usable, and the reasons counted in
`Instances.skipped` for everything dropped or repaired), and also drops, by the
image reasons of `kpose.data.images` (image missing, image unreadable, image
size mismatch), every instance on a bad image.

`Instances.ann_file` is the original annotation file when evaluating against it
is consistent with what was read (only crowd / keypoint-less people dropped,
boxes clipped: pycocotools ignores those anyway). When anything that changes
evaluation was repaired or dropped, a cleaned COCO copy is written to
`cache_dir/coco/` and used instead: images that failed the check are removed,
dropped annotations are removed, repaired ones are written as read (v=0 outside
the image, area and num_keypoints filled in); crowd and keypoint-less
annotations stay since COCOeval uses them as ignore regions.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from kpose.data import image_check
from kpose.data import images as _images
from kpose.data.coco_scan import (  # noqa: F401  (re-exported: the reasons and helpers of this reader)
    BAD_BOX, BAD_KEYPOINTS, BAD_LENGTH, CROWD, EDGE_TOLERANCE, EMPTY_BOX, EXPECTED_SKIPS, FIX_AREA_BOX,
    FIX_AREA_SEG, FIX_CLIPPED, FIX_NUM_KEYPOINTS, FIX_OUTSIDE, NO_KEYPOINTS, NO_KEYPOINTS_INSIDE,
    UNKNOWN_IMAGE, CocoScan, _skeleton_fix, inside_image, read_json, scan_coco,
)
from kpose.data.images import DataError
from kpose.data.records import Instances
from kpose.skeletons import COCO17, Skeleton

log = logging.getLogger(__name__)

_CLEAN_VERSION = 1


def write_json_atomic(path: Path, data) -> None:
    """Write JSON so that readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def head_sizes_from_keypoints(keypoints: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """PCKh normaliser per instance, NaN where the head segment is not labelled.

    MPII's official value is 0.6 x the diagonal of an annotated head box, which
    list-format annotations lack. The head box is taken as the square whose side
    is the labelled head segment (upper_neck -> head_top), so the normaliser is
    0.6 * sqrt(2) * |head_top - upper_neck| (about 0.85 x the segment).
    """
    n = len(keypoints)
    if "head" not in skeleton.extra or n == 0:
        return np.full(n, np.nan, np.float32)
    a, b = (skeleton.index(name) for name in skeleton.extra["head"])
    seg = np.linalg.norm(keypoints[:, a, :2] - keypoints[:, b, :2], axis=-1)
    labelled = (keypoints[:, a, 2] > 0) & (keypoints[:, b, 2] > 0) & (seg > 0)
    return np.where(labelled, 0.6 * np.sqrt(2.0) * seg, np.nan).astype(np.float32)


def check_scanned_images(scan: CocoScan, paths: list[str], cache_dir, check_images: bool, workers, progress
                         ) -> tuple[dict[str, str], dict[str, str]]:
    """(decode path per image, problem per bad image) for the given image paths of a scan."""
    sizes = {os.path.join(scan.image_dir, im["file_name"]): (int(im["width"]), int(im["height"]))
             for im in scan.data["images"]}
    if check_images:
        return image_check.check_images(paths, {p: sizes[p] for p in paths}, cache_dir=cache_dir,
                                    workers=workers, progress=progress)
    decode = {p: p for p in paths if os.path.isfile(p)}
    problems = {p: f"{_images.MISSING}: {p}: image file not found" for p in paths if p not in decode}
    for msg in problems.values():
        log.warning("%s", msg)
    return decode, problems


def evaluation_file(scan: CocoScan, bad_image_ids: set, cache_dir) -> str:
    """The annotation file to evaluate against: the original, or a cleaned copy (see the module docstring)."""
    if not (scan.eval_changed or bad_image_ids):
        return scan.path
    return _write_clean_copy(scan.path, scan.data, scan.repaired, scan.dropped, bad_image_ids,
                             scan.skeleton, cache_dir, scan.category_ids)


def read_coco(ann_file: str | os.PathLike, image_dir: str | os.PathLike,
              skeleton: Skeleton | str | None = COCO17, cache_dir: str | os.PathLike | None = None,
              check_images: bool = True, workers: int | None = None, progress: bool = True) -> Instances:
    """Read the person instances of a COCO keypoints file.

    skeleton: the layout of `keypoints` (None: inferred from the category's
    keypoint count). cache_dir: where normalised image copies, the image check
    manifest and a cleaned annotation copy go (default: `default_cache_dir()`).
    check_images: decode every image once (cached) and drop instances on bad
    images; False only checks that the files exist.
    """
    scan = scan_coco(ann_file, image_dir, skeleton)
    skeleton, skipped = scan.skeleton, scan.skipped
    # Decode only images that contribute instances: most COCO images have none.
    wanted = list(dict.fromkeys(r[6] for r in scan.rows))
    decode, problems = check_scanned_images(scan, wanted, cache_dir, check_images, workers, progress)
    bad_image_ids = set()
    kept = []
    for r in scan.rows:
        if r[6] in problems:
            skipped[image_check.problem_reason(problems[r[6]])] += 1
            bad_image_ids.add(r[0])
        else:
            kept.append(r)
    ann_out = evaluation_file(scan, bad_image_ids, cache_dir)

    n = len(kept)
    k = skeleton.num_keypoints
    keypoints = np.stack([r[3] for r in kept]).astype(np.float32) if n else np.zeros((0, k, 3), np.float32)
    result = Instances(
        image_paths=np.array([decode[r[6]] for r in kept], dtype=str),
        image_ids=np.array([r[0] for r in kept], np.int64),
        ann_ids=np.array([r[1] for r in kept], np.int64),
        bboxes=np.array([r[2] for r in kept], np.float32).reshape(n, 4),
        keypoints=keypoints,
        areas=np.array([r[4] for r in kept], np.float32),
        image_sizes=np.array([r[5] for r in kept], np.int32).reshape(n, 2),
        head_sizes=head_sizes_from_keypoints(keypoints, skeleton),
        skeleton=skeleton,
        source=scan.path,
        ann_file=ann_out,
        skipped=skipped,
    )
    log_summary(result, EXPECTED_SKIPS)
    return result


def _write_clean_copy(path: str, data: dict, repaired: dict, dropped: set, bad_image_ids: set,
                      skeleton: Skeleton, cache_dir, category_ids: tuple = (1,)) -> str:
    """A COCO file that evaluates exactly the instances this reader produced: the categories
    read (one, or several read together) become category 1, which predictions carry."""
    st = os.stat(path)
    key = (f"{path}|{st.st_size}|{st.st_mtime_ns}|{skeleton.name}|{sorted(bad_image_ids)}|{list(category_ids)}"
           f"|v{_CLEAN_VERSION}")
    cache = Path(cache_dir) if cache_dir is not None else _images.default_cache_dir()
    out = cache / "coco" / f"{Path(path).stem}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.json"
    if out.is_file():
        return str(out)
    clean = {k: v for k, v in data.items() if k not in ("images", "annotations")}
    clean["images"] = [im for im in data["images"] if im["id"] not in bad_image_ids]
    keep_images = {im["id"] for im in clean["images"]}
    clean["annotations"] = [repaired.get(a["id"], a) for a in data["annotations"]
                            if isinstance(a, dict) and a.get("image_id") in keep_images
                            and a.get("id") not in dropped]
    if tuple(category_ids) != (1,):
        chosen = set(category_ids)
        clean["annotations"] = [dict(a, category_id=1) for a in clean["annotations"] if a.get("category_id") in chosen]
        first = next(c for c in data["categories"] if c["id"] in chosen)
        clean["categories"] = [dict(first, id=1, name=skeleton.name)]
    try:
        write_json_atomic(out, clean)
    except OSError as e:
        raise DataError(f"cannot write the cleaned annotation copy of {path} to {out} ({e}). "
                        f"Fix: pass cache_dir= a writable directory or set KPOSE_CACHE.") from None
    log.info("%s: wrote cleaned annotation copy for evaluation: %s", path, out)
    return str(out)


def log_summary(instances: Instances, expected: frozenset, logger: logging.Logger = log) -> None:
    """Log the reader's summary: a warning when anything unexpected was dropped or repaired."""
    unexpected = {r: c for r, c in instances.skipped.items() if r not in expected}
    if unexpected:
        logger.warning("%s", instances.summary())
    else:
        logger.info("%s", instances.summary())
    if len(instances) == 0:
        logger.warning("%s: no usable person instances", instances.source)
