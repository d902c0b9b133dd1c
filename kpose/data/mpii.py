"""MPII Human Pose reader for the list format of HRNet/mmpose.

Each record is `{image, center, scale, joints, joints_vis}`: `scale` x 200 px is
the person's height, `joints` are 16 (x, y) in MPII's joint order, `joints_vis`
is 1 for an annotated joint (unannotated ones hold -1, -1).

Conventions (documented because the format leaves them open):

* Coordinates: the list files come from MPII's MATLAB annotations, and the
  readers that made this format (HRNet, mmpose) subtract 1 from `joints` and
  `center` to get 0-based pixel coordinates. `one_based=True` (default) does
  the same, so keypoints follow kpose's convention (pixel centres at integer
  positions). Pass `one_based=False` for files already 0-based.
* Box: MPII gives a rough person centre, not a box. The box is the square of
  side `scale * 200` (the person height) centred at `(cx, cy + 15 * scale)`:
  HRNet's shift moves it down because MPII's centre sits high on the body
  (box in the edge frame of `kpose.transforms`, so the crop centre is exactly
  that point). No
  extra padding here (HRNet's x1.25 is the top-down crop's job), and the box is
  clipped to the image.
* Visibility: v = 2 for annotated joints, 0 otherwise (this format has no
  occluded flag).
* Head size (PCKh): see `kpose.data.coco.head_sizes_from_keypoints`:
  0.6 * sqrt(2) * |head_top - upper_neck|, NaN when either is unannotated.
* OKS area: `AREA_FACTOR` x the clipped box area, written into a COCO-format
  copy (`cache_dir/mpii/`) that becomes `Instances.ann_file`, with `head_size`
  on each annotation so PCKh can be computed from that file too.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np

from kpose.data import image_check
from kpose.data import images as _images
from kpose.data.coco import (BAD_KEYPOINTS, BAD_LENGTH, EMPTY_BOX, FIX_OUTSIDE, NO_KEYPOINTS,
                             NO_KEYPOINTS_INSIDE, _skeleton_fix, head_sizes_from_keypoints, inside_image,
                             log_summary, read_json, write_json_atomic)
from kpose.data.images import DataError
from kpose.data.records import Instances
from kpose.skeletons import MPII16, Skeleton, get_skeleton

log = logging.getLogger(__name__)

BAD_CENTER = "invalid center or scale"
NO_HEAD = "warning: no head size (head_top or upper_neck unannotated)"
EXPECTED_SKIPS = frozenset({NO_KEYPOINTS})

# A standing person's segmentation covers about a quarter of the square of their
# height (box about 0.45 x height wide, mask about 55% of that box, as in COCO).
AREA_FACTOR = 0.25
# HRNet's downward shift of MPII's person centre, in units of `scale`.
CENTER_SHIFT = 15.0

_REQUIRED = ("image", "center", "scale", "joints", "joints_vis")


def _check_structure(data, path: str, k: int, skeleton: Skeleton) -> None:
    if isinstance(data, dict):
        hint = " It has 'annotations': that looks like COCO format; use read_coco / 'coco:ANN:IMAGES'." \
            if "annotations" in data else ""
        raise DataError(f"{path}: top level is a JSON object, expected a list of "
                        f"{{image, center, scale, joints, joints_vis}} records.{hint} "
                        f"Fix: pass an MPII list file (HRNet/mmpose format).")
    if not isinstance(data, list):
        raise DataError(f"{path}: top level is a JSON {type(data).__name__}, expected a list of records. "
                        f"Fix: pass an MPII list file (HRNet/mmpose format).")
    for field in _REQUIRED:
        bad = [i for i, r in enumerate(data) if not isinstance(r, dict) or field not in r]
        if bad:
            raise DataError(f"{path}: {len(bad)} of {len(data)} records lack required field '{field}' "
                            f"(first: record [{bad[0]}]). Fix: every record needs {', '.join(_REQUIRED)} "
                            f"(HRNet/mmpose MPII format; test-split files without joints cannot be trained on).")
    lengths = Counter(len(r["joints"]) if isinstance(r["joints"], list) else -1 for r in data)
    if data and lengths.get(k, 0) == 0:
        found = lengths.most_common(1)[0][0]
        raise DataError(f"{path}: field joints has {found} entries per record but skeleton "
                        f"{skeleton.name!r} needs {k}. Fix: {_skeleton_fix(found)}")


def _parse(record: dict, k: int, offset: float):
    """(center, scale, keypoints[K, 3]) or a skip reason."""
    try:
        center = np.asarray(record["center"], np.float64)
        scale = float(record["scale"])
        joints = np.asarray(record["joints"], np.float64)
        vis = np.asarray(record["joints_vis"], np.float64)
    except (TypeError, ValueError):
        return BAD_KEYPOINTS
    if center.shape != (2,) or not np.all(np.isfinite(center)) or not (np.isfinite(scale) and scale > 0):
        return BAD_CENTER
    if joints.ndim < 1 or joints.shape[0] != k or vis.shape != (k,):
        return BAD_LENGTH
    if joints.shape != (k, 2) or not np.all(np.isfinite(joints)) or not np.all(np.isin(vis, (0, 1))):
        return BAD_KEYPOINTS
    kp = np.zeros((k, 3), np.float64)
    labelled = vis > 0
    kp[labelled, :2] = joints[labelled] - offset
    kp[labelled, 2] = 2.0
    return center - offset, scale, kp


def read_mpii(list_file: str | os.PathLike, image_dir: str | os.PathLike, skeleton: Skeleton | str = MPII16,
              cache_dir: str | os.PathLike | None = None, check_images: bool = True,
              workers: int | None = None, progress: bool = True, one_based: bool = True) -> Instances:
    """Read an MPII list file (HRNet/mmpose format) into Instances; see the module docstring."""
    path = os.path.abspath(os.fspath(list_file))
    image_dir = os.path.abspath(os.fspath(image_dir))
    skeleton = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
    k = skeleton.num_keypoints
    data = read_json(path, "MPII annotation list",
                     "pass the path of an MPII list JSON (e.g. annot/valid.json of HRNet's MPII layout).")
    _check_structure(data, path, k, skeleton)
    if not os.path.isdir(image_dir):
        raise DataError(f"{image_dir}: image directory of {path} not found. Fix: pass the folder that "
                        f"holds the files named by the records' 'image' field.")

    skipped: Counter = Counter()
    image_ids: dict[str, int] = {}
    rows = []
    for i, record in enumerate(data):
        # Ids are assigned before skipping so that they do not change when the
        # set of bad samples does.
        image_id = image_ids.setdefault(str(record["image"]), len(image_ids) + 1)
        parsed = _parse(record, k, 1.0 if one_based else 0.0)
        if isinstance(parsed, str):
            skipped[parsed] += 1
            continue
        center, scale, kp = parsed
        if not (kp[:, 2] > 0).any():
            skipped[NO_KEYPOINTS] += 1
            continue
        rows.append((i + 1, image_id, os.path.join(image_dir, str(record["image"])), center, scale, kp))

    wanted = list(dict.fromkeys(r[2] for r in rows))
    if check_images:
        decode, problems = image_check.check_images(wanted, None, cache_dir=cache_dir, workers=workers,
                                                progress=progress)
    else:
        decode, problems = {}, {}
        for p in wanted:
            if os.path.isfile(p):
                decode[p] = p
            else:
                problems[p] = f"{_images.MISSING}: {p}: image file not found"
    sizes: dict[str, tuple[int, int]] = {}
    for p in list(decode):
        try:
            sizes[p] = _images.image_size(decode[p])
        except _images.ImageError as e:
            problems[p] = f"{_images.UNREADABLE}: {e}"
            del decode[p]
    if not check_images:
        for msg in problems.values():
            log.warning("%s", msg)

    kept = []
    for ann_id, image_id, image_path, center, scale, kp in rows:
        if image_path in problems:
            skipped[image_check.problem_reason(problems[image_path])] += 1
            continue
        width, height = sizes[image_path]
        side = scale * 200.0
        # Boxes live in the edge frame (image spans [0, W]; see kpose.transforms),
        # keypoints and MPII's centre in the pixel-centre frame: +0.5 converts.
        cx, cy = center[0] + 0.5, center[1] + CENTER_SHIFT * scale + 0.5
        x0, y0 = max(cx - side / 2, 0.0), max(cy - side / 2, 0.0)
        x1, y1 = min(cx + side / 2, width), min(cy + side / 2, height)
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            skipped[EMPTY_BOX] += 1
            continue
        out = (kp[:, 2] > 0) & ~inside_image(kp[:, :2], width, height)
        if out.any():
            kp = kp.copy()
            kp[out] = 0.0
            if not (kp[:, 2] > 0).any():
                skipped[NO_KEYPOINTS_INSIDE] += 1
                continue
            skipped[FIX_OUTSIDE] += 1
        kept.append((ann_id, image_id, decode[image_path], (x0, y0, x1 - x0, y1 - y0), kp,
                     AREA_FACTOR * (x1 - x0) * (y1 - y0), (height, width), image_path))

    n = len(kept)
    keypoints = np.stack([r[4] for r in kept]).astype(np.float32) if n else np.zeros((0, k, 3), np.float32)
    head_sizes = head_sizes_from_keypoints(keypoints, skeleton)
    if n and np.isnan(head_sizes).any():
        skipped[NO_HEAD] += int(np.isnan(head_sizes).sum())
    result = Instances(
        image_paths=np.array([r[2] for r in kept], dtype=str),
        image_ids=np.array([r[1] for r in kept], np.int64),
        ann_ids=np.array([r[0] for r in kept], np.int64),
        bboxes=np.array([r[3] for r in kept], np.float32).reshape(n, 4),
        keypoints=keypoints,
        areas=np.array([r[5] for r in kept], np.float32),
        image_sizes=np.array([r[6] for r in kept], np.int32).reshape(n, 2),
        head_sizes=head_sizes,
        skeleton=skeleton,
        source=path,
        skipped=skipped,
    )
    originals = {r[1]: os.path.relpath(r[7], image_dir) for r in kept}
    result.ann_file = write_coco_json(result, originals, path, cache_dir)
    log_summary(result, EXPECTED_SKIPS, log)
    return result


def to_coco_dict(instances: Instances, file_names: dict[int, str], description: str = "") -> dict:
    """The COCO keypoints form of `instances` (extra `head_size` per annotation)."""
    skel = instances.skeleton
    images = {}
    annotations = []
    for i in range(len(instances)):
        image_id = int(instances.image_ids[i])
        height, width = (int(v) for v in instances.image_sizes[i])
        images.setdefault(image_id, {"id": image_id, "file_name": file_names.get(image_id, ""),
                                     "width": width, "height": height})
        kp = instances.keypoints[i]
        head = float(instances.head_sizes[i])
        annotations.append({
            "id": int(instances.ann_ids[i]), "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "bbox": [round(float(v), 3) for v in instances.bboxes[i]],
            "area": round(float(instances.areas[i]), 3),
            "num_keypoints": int((kp[:, 2] > 0).sum()),
            "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
            "head_size": None if np.isnan(head) else round(head, 4),
        })
    return {
        "info": {"description": description},
        "images": sorted(images.values(), key=lambda im: im["id"]),
        "annotations": annotations,
        "categories": [{
            "id": 1, "name": "person", "supercategory": "person",
            "keypoints": list(skel.keypoints),
            "skeleton": [[a + 1, b + 1] for a, b in skel.limbs],  # COCO numbers keypoints from 1
        }],
    }


def write_coco_json(instances: Instances, file_names: dict[int, str], source: str,
                    cache_dir: str | os.PathLike | None) -> str:
    """Write the COCO form of `instances` into `cache_dir/mpii/`, named by its content; return the path."""
    data = to_coco_dict(instances, file_names,
                        f"kpose conversion of {source}: bbox = square of side scale*200 at the shifted "
                        f"centre, clipped; area = {AREA_FACTOR} x box area; head_size = 0.6*sqrt(2)*"
                        f"|head_top - upper_neck|")
    text = json.dumps(data)
    cache = Path(cache_dir) if cache_dir is not None else _images.default_cache_dir()
    out = cache / "mpii" / f"{Path(source).stem}-{hashlib.sha1(text.encode()).hexdigest()[:12]}.json"
    if not out.is_file():
        try:
            write_json_atomic(out, data)
        except OSError as e:
            raise DataError(f"cannot write the COCO copy of {source} to {out} ({e}). "
                            f"Fix: pass cache_dir= a writable directory or set KPOSE_CACHE.") from None
    return str(out)
