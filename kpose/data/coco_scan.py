"""Validating a COCO person-keypoints file and sorting its person annotations.

`scan_coco` opens no image: it checks the file's structure (errors name the
file, the field and the fix), resolves the skeleton, and sorts every person
annotation into a usable person (a `CocoScan.rows` entry) or another one
(`CocoScan.others`), counting each in `CocoScan.skipped` by reason:

not a usable person
    iscrowd; no labelled keypoints (num_keypoints == 0: COCO's top-down training
    and evaluation use only people with keypoints); no labelled keypoints inside
    the image; empty box (zero area after clipping to the image); invalid bbox;
    invalid keypoints; keypoints length differs from the skeleton; image_id not
    in images (the only ones not in `others`: they belong to no image).
repaired (kept, reason starts with "warning:")
    keypoints outside the image set to v=0; area missing (computed from the
    segmentation, else the box); num_keypoints missing or wrong (recomputed);
    box clipped to the image (counted when it stuck out by more than 1 px).

The readers decide what the others become: `kpose.data.coco.read_coco`
(top-down) drops them; `kpose.data.coco_images.read_coco_images` (bottom-up)
turns them into ignore regions.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from kpose.data.coco_skeleton import FROM_DATA, pick_categories, skeleton_from_categories, skeleton_request
from kpose.data.images import DataError
from kpose.skeletons import COCO17, SKELETONS, Skeleton, get_skeleton

log = logging.getLogger(__name__)

CROWD = "iscrowd"
NO_KEYPOINTS = "no labelled keypoints"
NO_KEYPOINTS_INSIDE = "no labelled keypoints inside the image"
EMPTY_BOX = "empty box (zero area after clipping to the image)"
BAD_BOX = "invalid bbox (not 4 finite numbers)"
BAD_KEYPOINTS = "invalid keypoints (not numbers, non-finite, or v not 0/1/2)"
BAD_LENGTH = "keypoints length differs from the skeleton"
UNKNOWN_IMAGE = "image_id not in images"
FIX_OUTSIDE = "warning: keypoints outside the image set to v=0"
FIX_AREA_SEG = "warning: area missing, computed from segmentation"
FIX_AREA_BOX = "warning: area missing, computed from the box"
FIX_NUM_KEYPOINTS = "warning: num_keypoints missing or wrong, recomputed"
FIX_CLIPPED = "warning: box clipped to the image"

# Skips that are the normal content of COCO and that COCOeval ignores anyway.
EXPECTED_SKIPS = frozenset({CROWD, NO_KEYPOINTS})

# A keypoint counts as inside when within the image extent [-0.5, W - 0.5]
# (pixel centres at integers) give or take this much: annotators click on the
# border, and conventions differ by half a pixel.
EDGE_TOLERANCE = 1.0


def read_json(path: str | os.PathLike, what: str, fix: str):
    """json.load with DataErrors that name the file and how to fix it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: {what} not found. Fix: {fix}")
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: {what} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}). "
                        f"Fix: {fix}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: {what} is not UTF-8 text ({e}). Fix: {fix}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read {what} ({e}). Fix: {fix}") from None


def _norm_names(names) -> tuple[str, ...]:
    return tuple(str(n).strip().lower().replace(" ", "_").replace("-", "_") for n in names)


def _resolve_skeleton(skeleton, path: str, category: dict, annotations: list) -> Skeleton:
    names = category.get("keypoints")
    names = _norm_names(names) if isinstance(names, list) and names else None
    if isinstance(skeleton, str):
        skeleton = get_skeleton(skeleton)
    if skeleton is None:
        by_name = [s for s in SKELETONS.values() if names is not None and s.keypoints == names]
        if by_name:
            return by_name[0]
        counts = Counter(len(a["keypoints"]) // 3 for a in annotations if isinstance(a.get("keypoints"), list))
        k = len(names) if names else (counts.most_common(1)[0][0] if counts else 0)
        matches = [s for s in SKELETONS.values() if s.num_keypoints == k]
        if len(matches) != 1:
            raise DataError(f"{path}: cannot tell the skeleton from {k} keypoints per person. "
                            f"Fix: pass skeleton= one of {sorted(SKELETONS)}.")
        skeleton = matches[0]
    if names is not None and len(names) != skeleton.num_keypoints:
        raise DataError(f"{path}: field categories[name='person'].keypoints lists {len(names)} keypoints but "
                        f"skeleton {skeleton.name!r} has {skeleton.num_keypoints}. Fix: {_skeleton_fix(len(names))}")
    if names is not None and names != skeleton.keypoints:
        # Same count, other names: maybe only spelling, maybe another order, in
        # which case flip pairs and limbs would be wrong. Not provable, so warn.
        log.warning("%s: category keypoint names %s differ from skeleton %r %s; check the keypoint order",
                    path, list(names), skeleton.name, list(skeleton.keypoints))
    return skeleton


_NOTED: set[str] = set()


def _note_once(note: str) -> None:
    """Say what was inferred about a file's skeleton once per process (train and val read it again)."""
    if note not in _NOTED:
        _NOTED.add(note)
        log.warning("%s", note)


def _skeleton_name(path: str, categories: list[dict]) -> str:
    """One category: its name; several read together: the file's name."""
    text = str(categories[0].get("name")) if len(categories) == 1 else Path(path).stem
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "custom"


def _skeleton_fix(k: int) -> str:
    matches = [name for name, s in SKELETONS.items() if s.num_keypoints == k]
    if matches:
        return f"use skeleton={matches[0]!r}."
    return (f"no built-in skeleton has {k} keypoints (known: "
            f"{', '.join(f'{n}={s.num_keypoints}' for n, s in SKELETONS.items())}); read the file's own "
            f"keypoints with skeleton='{FROM_DATA}'.")


def _check_structure(data, path: str) -> None:
    """Fail fast on anything that makes the whole file unusable."""
    if not isinstance(data, dict):
        hint = (" It is a list: that looks like the MPII list format; read it with read_mpii / 'mpii:LIST:IMAGES'."
                if isinstance(data, list) else "")
        raise DataError(f"{path}: top level is a JSON {type(data).__name__}, expected an object with "
                        f"'images', 'annotations' and 'categories'.{hint} Fix: pass a COCO keypoints file.")
    for field in ("images", "annotations", "categories"):
        if field not in data:
            raise DataError(f"{path}: missing required top-level field '{field}'. Fix: add '{field}' "
                            f"(a list) as in COCO's person_keypoints_*.json, or pass the right file.")
        if not isinstance(data[field], list):
            raise DataError(f"{path}: top-level field '{field}' is a {type(data[field]).__name__}, "
                            f"expected a list. Fix: write '{field}' as a JSON list.")
    _require(path, data["images"], "images", ("id", "file_name", "width", "height"))
    _require(path, data["categories"], "categories", ("id", "name"))
    _unique(path, data["images"], "images")


def _require(path: str, items: list, field: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        bad = [i for i, item in enumerate(items) if not isinstance(item, dict) or key not in item]
        if bad:
            first = items[bad[0]]
            where = f"id {first['id']!r}" if isinstance(first, dict) and "id" in first else f"{field}[{bad[0]}]"
            raise DataError(f"{path}: {len(bad)} of {len(items)} entries of '{field}' lack required field "
                            f"'{key}' (first: {where}). Fix: add '{key}' to every entry of "
                            f"'{field}' (COCO format).")


def _unique(path: str, items: list, field: str) -> None:
    counts = Counter(item["id"] for item in items if isinstance(item, dict) and "id" in item)
    dup = [k for k, c in counts.items() if c > 1]
    if dup:
        raise DataError(f"{path}: {len(dup)} duplicate ids in '{field}' (first: {dup[0]!r}); pycocotools "
                        f"indexes by id, so duplicates would silently overwrite each other. "
                        f"Fix: give every entry of '{field}' a unique 'id'.")


def _index(data: dict) -> COCO:
    """A pycocotools COCO over an already loaded dict (its prints silenced)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _segmentation_area(coco: COCO, ann: dict) -> float | None:
    seg = ann.get("segmentation")
    if not seg:
        return None
    try:
        area = float(mask_utils.area(coco.annToRLE(ann)))
    except Exception:  # malformed polygons/RLE: fall back to the box, still counted
        return None
    return area if area > 0 else None


def parse_box(bbox) -> np.ndarray | None:
    """A COCO bbox as 4 finite float64 numbers, or None."""
    try:
        box = np.asarray(bbox, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        return None
    return box


def _parse_keypoints(kps, k: int) -> np.ndarray | str:
    try:
        arr = np.asarray(kps, dtype=np.float64)
    except (TypeError, ValueError):
        return BAD_KEYPOINTS
    if arr.ndim != 1:
        return BAD_KEYPOINTS
    if arr.size != 3 * k:
        return BAD_LENGTH
    arr = arr.reshape(k, 3)
    if not np.all(np.isfinite(arr)) or not np.all(np.isin(arr[:, 2], (0, 1, 2))):
        return BAD_KEYPOINTS
    return arr


def inside_image(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boolean mask of points within the image extent (see EDGE_TOLERANCE)."""
    lo = -0.5 - EDGE_TOLERANCE
    return ((xy[..., 0] >= lo) & (xy[..., 0] <= width - 0.5 + EDGE_TOLERANCE)
            & (xy[..., 1] >= lo) & (xy[..., 1] <= height - 0.5 + EDGE_TOLERANCE))


@dataclass
class CocoScan:
    """One pass over a COCO keypoints file: usable people, the other person annotations, counts.

    rows:      (image id, ann id, box (x, y, w, h) clipped, keypoints [K, 3], area, (h, w), image path)
               of every usable person (non-crowd, labelled keypoints inside the image).
    others:    (image id, annotation, reason) of every other person annotation on a known image:
               crowd, keypoint-less, and invalid ones (bottom-up readers make them ignore regions).
    skipped:   reason -> count, as in `Instances.skipped`.
    repaired, dropped, eval_changed: what the cleaned evaluation copy needs (see `read_coco`).
    """

    path: str
    image_dir: str
    data: dict
    coco: COCO
    skeleton: Skeleton
    rows: list = field(default_factory=list)
    others: list = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    repaired: dict = field(default_factory=dict)
    dropped: set = field(default_factory=set)
    eval_changed: bool = False
    category_ids: tuple = (1,)


COCO_FIX = "pass the path of a COCO keypoints JSON (e.g. annotations/person_keypoints_val2017.json)."


def scan_coco(ann_file: str | os.PathLike, image_dir: str | os.PathLike,
              skeleton: Skeleton | str | None = COCO17) -> CocoScan:
    """Validate a COCO keypoints file and sort its person annotations (no image is opened)."""
    path = os.path.abspath(os.fspath(ann_file))
    return scan_coco_data(read_json(path, "COCO annotation file", COCO_FIX), path, image_dir, skeleton)


def scan_coco_data(data, path: str, image_dir: str | os.PathLike,
                   skeleton: Skeleton | str | None = COCO17) -> CocoScan:
    """`scan_coco` of an already loaded file (or part of one: kpose.data.pack scans a large file
    a few hundred images at a time); `path` names it in messages."""
    image_dir = os.path.abspath(os.fspath(image_dir))
    _check_structure(data, path)
    if not os.path.isdir(image_dir):
        raise DataError(f"{image_dir}: image directory of {path} not found. Fix: pass the folder that "
                        f"holds the files named by images[].file_name.")

    request = skeleton_request(skeleton)
    if request is not None:
        persons = pick_categories(path, data["categories"], request)
    else:
        persons = [c for c in data["categories"] if str(c["name"]).lower() == "person"]
    if not persons:
        names = [c["name"] for c in data["categories"]]
        raise DataError(f"{path}: no category named 'person' in field 'categories' (found {names}). "
                        f"Fix: name the human category 'person', or read the file's own keypoints with "
                        f"skeleton='{FROM_DATA}' (recipe: skeleton: {FROM_DATA}).")
    person_ids = {c["id"] for c in persons}
    anns = [a for a in data["annotations"] if isinstance(a, dict) and a.get("category_id") in person_ids]
    no_cat = sum(1 for a in data["annotations"] if not isinstance(a, dict) or "category_id" not in a)
    if no_cat:
        raise DataError(f"{path}: {no_cat} entries of 'annotations' lack required field 'category_id'. "
                        f"Fix: set 'category_id' to the person category's id ({sorted(person_ids)[0]}).")
    _require(path, anns, "annotations", ("id", "image_id", "bbox", "keypoints"))
    _unique(path, data["annotations"], "annotations")
    if request is not None:
        skeleton, notes = skeleton_from_categories(path, persons, request, _skeleton_name(path, persons))
        for note in notes:
            _note_once(note)
    else:
        skeleton = _resolve_skeleton(skeleton, path, persons[0], anns)
    k = skeleton.num_keypoints
    lengths = Counter(len(a["keypoints"]) if isinstance(a["keypoints"], list) else -1 for a in anns)
    if anns and lengths.get(3 * k, 0) == 0:
        found = lengths.most_common(1)[0][0]
        raise DataError(f"{path}: field annotations[].keypoints has {found} numbers ({found // 3} keypoints) "
                        f"but skeleton {skeleton.name!r} needs {3 * k}. Fix: {_skeleton_fix(found // 3)}")

    scan = CocoScan(path, image_dir, data, _index(data), skeleton, category_ids=tuple(sorted(person_ids)))
    # Predictions are written with category 1: evaluate other ids (and merged categories) on a copy.
    scan.eval_changed = scan.category_ids != (1,)
    images = {im["id"]: im for im in data["images"]}
    for a in anns:
        if a["image_id"] not in images:
            scan.skipped[UNKNOWN_IMAGE] += 1
            scan.dropped.add(a["id"])
    for img_id, im in images.items():
        for a in scan.coco.imgToAnns.get(img_id, []):
            if a.get("category_id") in person_ids:
                _scan_annotation(scan, a, im)
    if scan.repaired:
        scan.eval_changed = True
    return scan


def _scan_annotation(scan: CocoScan, a: dict, im: dict) -> None:
    """Sort one person annotation into scan.rows or scan.others, counting what was dropped or fixed."""
    width, height = int(im["width"]), int(im["height"])
    img_id = im["id"]
    fixes: dict = {}
    reasons: list[str] = []

    def other(reason: str, drop: bool) -> None:
        scan.skipped[reason] += 1
        scan.others.append((img_id, a, reason))
        if drop:
            scan.dropped.add(a["id"])
            scan.eval_changed = True
        else:
            _keep_fixes(scan.repaired, scan.skipped, a, fixes, reasons)

    if "area" not in a or not _as_float(a["area"]) > 0:  # NaN fails too
        # COCOeval divides by every ground truth's area, crowd ones included.
        area = _segmentation_area(scan.coco, a)
        if area is not None:
            reasons.append(FIX_AREA_SEG)
        else:
            box = parse_box(a["bbox"])
            area = float(box[2] * box[3]) if box is not None and box[2] > 0 and box[3] > 0 else 1.0
            reasons.append(FIX_AREA_BOX)
        fixes["area"] = area
    kp = _parse_keypoints(a["keypoints"], scan.skeleton.num_keypoints)
    n_labelled = int((kp[:, 2] > 0).sum()) if not isinstance(kp, str) else 0
    if a.get("iscrowd"):
        if "num_keypoints" not in a:  # COCOeval reads it on crowd regions too
            fixes["num_keypoints"] = n_labelled
            reasons.append(FIX_NUM_KEYPOINTS)
        return other(CROWD, drop=False)
    if isinstance(kp, str):
        return other(kp, drop=True)
    if a.get("num_keypoints") != n_labelled:
        fixes["num_keypoints"] = n_labelled
        reasons.append(FIX_NUM_KEYPOINTS)
    if n_labelled == 0:
        return other(NO_KEYPOINTS, drop=False)
    box = parse_box(a["bbox"])
    if box is None:
        return other(BAD_BOX, drop=True)
    x0, y0 = max(box[0], 0.0), max(box[1], 0.0)
    x1, y1 = min(box[0] + box[2], width), min(box[1] + box[3], height)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return other(EMPTY_BOX, drop=True)
    if max(x0 - box[0], y0 - box[1], box[0] + box[2] - x1, box[1] + box[3] - y1) > 1.0:
        reasons.append(FIX_CLIPPED)
    out = (kp[:, 2] > 0) & ~inside_image(kp[:, :2], width, height)
    if out.any():
        reasons.append(FIX_OUTSIDE)
        kp[out] = 0.0
        fixes["keypoints"] = [float(v) if v % 1 else int(v) for v in kp.reshape(-1)]
        fixes["num_keypoints"] = int((kp[:, 2] > 0).sum())
        if fixes["num_keypoints"] == 0:
            return other(NO_KEYPOINTS_INSIDE, drop=True)
    kp[kp[:, 2] == 0, :2] = 0.0  # COCO's convention for unlabelled points
    _keep_fixes(scan.repaired, scan.skipped, a, fixes, reasons)
    area = fixes.get("area", _as_float(a.get("area")))
    scan.rows.append((img_id, a["id"], (x0, y0, x1 - x0, y1 - y0), kp, area, (height, width),
                      os.path.join(scan.image_dir, im["file_name"])))


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _keep_fixes(repaired: dict, skipped: Counter, ann: dict, fixes: dict, reasons: list[str]) -> None:
    """Count the repairs of an annotation that stays, and remember its corrected copy."""
    skipped.update(reasons)
    if fixes:
        fixed = copy.copy(ann)
        fixed.update(fixes)
        repaired[ann["id"]] = fixed
