"""COCO person-keypoints reader (also OCHuman, CrowdPose-style files in COCO format).

`read_coco` keeps one row per usable person annotation and counts everything it
drops or repairs in `Instances.skipped`:

dropped (the instance is not in the result)
    iscrowd; no labelled keypoints (num_keypoints == 0: COCO's top-down training
    and evaluation use only people with keypoints); no labelled keypoints inside
    the image; empty box (zero area after clipping to the image); invalid bbox;
    invalid keypoints; keypoints length differs from the skeleton; image_id not
    in images; and the image reasons of `kpose.data.images` (image missing,
    image unreadable, image size mismatch) for every instance on a bad image.
repaired (kept, reason starts with "warning:")
    keypoints outside the image set to v=0; area missing (computed from the
    segmentation, else the box); num_keypoints missing or wrong (recomputed);
    box clipped to the image (counted when it stuck out by more than 1 px).

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

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np

from kpose.data import images as _images
from kpose.data.images import DataError
from kpose.data.records import Instances
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

_CLEAN_VERSION = 1


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


def _skeleton_fix(k: int) -> str:
    matches = [name for name, s in SKELETONS.items() if s.num_keypoints == k]
    if matches:
        return f"use skeleton={matches[0]!r}."
    return (f"no built-in skeleton has {k} keypoints (known: "
            f"{', '.join(f'{n}={s.num_keypoints}' for n, s in SKELETONS.items())}); convert the annotations.")


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


def _index(data: dict):
    """A pycocotools COCO over an already loaded dict (its prints silenced)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _segmentation_area(coco, ann: dict) -> float | None:
    seg = ann.get("segmentation")
    if not seg:
        return None
    try:
        from pycocotools import mask as mask_utils

        area = float(mask_utils.area(coco.annToRLE(ann)))
    except Exception:  # malformed polygons/RLE: fall back to the box, still counted
        return None
    return area if area > 0 else None


def _parse_box(bbox) -> np.ndarray | None:
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
    path = os.path.abspath(os.fspath(ann_file))
    image_dir = os.path.abspath(os.fspath(image_dir))
    fix = "pass the path of a COCO keypoints JSON (e.g. annotations/person_keypoints_val2017.json)."
    data = read_json(path, "COCO annotation file", fix)
    _check_structure(data, path)
    if not os.path.isdir(image_dir):
        raise DataError(f"{image_dir}: image directory of {path} not found. Fix: pass the folder that "
                        f"holds the files named by images[].file_name.")

    persons = [c for c in data["categories"] if str(c["name"]).lower() == "person"]
    if not persons:
        names = [c["name"] for c in data["categories"]]
        raise DataError(f"{path}: no category named 'person' in field 'categories' (found {names}). "
                        f"Fix: name the human category 'person' (kpose reads person keypoints only).")
    person_ids = {c["id"] for c in persons}
    anns = [a for a in data["annotations"] if isinstance(a, dict) and a.get("category_id") in person_ids]
    no_cat = sum(1 for a in data["annotations"] if not isinstance(a, dict) or "category_id" not in a)
    if no_cat:
        raise DataError(f"{path}: {no_cat} entries of 'annotations' lack required field 'category_id'. "
                        f"Fix: set 'category_id' to the person category's id ({sorted(person_ids)[0]}).")
    _require(path, anns, "annotations", ("id", "image_id", "bbox", "keypoints"))
    _unique(path, data["annotations"], "annotations")
    skeleton = _resolve_skeleton(skeleton, path, persons[0], anns)
    k = skeleton.num_keypoints
    lengths = Counter(len(a["keypoints"]) if isinstance(a["keypoints"], list) else -1 for a in anns)
    if anns and lengths.get(3 * k, 0) == 0:
        found = lengths.most_common(1)[0][0]
        raise DataError(f"{path}: field annotations[].keypoints has {found} numbers ({found // 3} keypoints) "
                        f"but skeleton {skeleton.name!r} needs {3 * k}. Fix: {_skeleton_fix(found // 3)}")

    coco = _index(data)
    images = {im["id"]: im for im in data["images"]}
    skipped: Counter = Counter()
    repaired: dict = {}          # ann id -> corrected copy, for the cleaned annotation file
    dropped: set = set()         # ann ids left out of the cleaned annotation file
    eval_changed = False         # True when evaluating against the original file would disagree
    rows: list[tuple] = []

    for a in anns:
        if a["image_id"] not in images:
            skipped[UNKNOWN_IMAGE] += 1
            dropped.add(a["id"])
    for img_id, im in images.items():
        width, height = int(im["width"]), int(im["height"])
        for a in coco.imgToAnns.get(img_id, []):
            if a.get("category_id") not in person_ids:
                continue
            fixes: dict = {}
            reasons: list[str] = []
            if "area" not in a or not _as_float(a["area"]) > 0:  # NaN fails too
                # COCOeval divides by every ground truth's area, crowd ones included.
                area = _segmentation_area(coco, a)
                if area is not None:
                    reasons.append(FIX_AREA_SEG)
                else:
                    box = _parse_box(a["bbox"])
                    area = float(box[2] * box[3]) if box is not None and box[2] > 0 and box[3] > 0 else 1.0
                    reasons.append(FIX_AREA_BOX)
                fixes["area"] = area
            kp = _parse_keypoints(a["keypoints"], k)
            n_labelled = int((kp[:, 2] > 0).sum()) if not isinstance(kp, str) else 0
            if a.get("iscrowd"):
                if "num_keypoints" not in a:  # COCOeval reads it on crowd regions too
                    fixes["num_keypoints"] = n_labelled
                    reasons.append(FIX_NUM_KEYPOINTS)
                skipped[CROWD] += 1
                _keep_fixes(repaired, skipped, a, fixes, reasons)
                continue
            if isinstance(kp, str):
                skipped[kp] += 1
                dropped.add(a["id"])
                eval_changed = True
                continue
            if a.get("num_keypoints") != n_labelled:
                fixes["num_keypoints"] = n_labelled
                reasons.append(FIX_NUM_KEYPOINTS)
            if n_labelled == 0:
                skipped[NO_KEYPOINTS] += 1
                _keep_fixes(repaired, skipped, a, fixes, reasons)
                continue
            box = _parse_box(a["bbox"])
            if box is None:
                skipped[BAD_BOX] += 1
                dropped.add(a["id"])
                eval_changed = True
                continue
            x0, y0 = max(box[0], 0.0), max(box[1], 0.0)
            x1, y1 = min(box[0] + box[2], width), min(box[1] + box[3], height)
            if x1 - x0 <= 0 or y1 - y0 <= 0:
                skipped[EMPTY_BOX] += 1
                dropped.add(a["id"])
                eval_changed = True
                continue
            if max(x0 - box[0], y0 - box[1], box[0] + box[2] - x1, box[1] + box[3] - y1) > 1.0:
                reasons.append(FIX_CLIPPED)
            out = (kp[:, 2] > 0) & ~inside_image(kp[:, :2], width, height)
            if out.any():
                reasons.append(FIX_OUTSIDE)
                kp[out] = 0.0
                fixes["keypoints"] = [float(v) if v % 1 else int(v) for v in kp.reshape(-1)]
                fixes["num_keypoints"] = int((kp[:, 2] > 0).sum())
                if fixes["num_keypoints"] == 0:
                    skipped[NO_KEYPOINTS_INSIDE] += 1
                    dropped.add(a["id"])
                    eval_changed = True
                    continue
            kp[kp[:, 2] == 0, :2] = 0.0  # COCO's convention for unlabelled points
            _keep_fixes(repaired, skipped, a, fixes, reasons)
            area = fixes.get("area", _as_float(a.get("area")))
            rows.append((img_id, a["id"], (x0, y0, x1 - x0, y1 - y0), kp, area, (height, width),
                         os.path.join(image_dir, im["file_name"])))
    if repaired:
        eval_changed = True

    # Decode only images that contribute instances: most COCO images have none.
    wanted = list(dict.fromkeys(r[6] for r in rows))
    sizes = {os.path.join(image_dir, im["file_name"]): (int(im["width"]), int(im["height"]))
             for im in images.values()}
    if check_images:
        decode, problems = _images.check_images(wanted, {p: sizes[p] for p in wanted}, cache_dir=cache_dir,
                                                workers=workers, progress=progress)
    else:
        decode = {p: p for p in wanted if os.path.isfile(p)}
        problems = {p: f"{_images.MISSING}: {p}: image file not found" for p in wanted if p not in decode}
        for msg in problems.values():
            log.warning("%s", msg)
    bad_image_ids = set()
    kept = []
    for r in rows:
        if r[6] in problems:
            skipped[_images.problem_reason(problems[r[6]])] += 1
            bad_image_ids.add(r[0])
            eval_changed = True
        else:
            kept.append(r)

    ann_out = path
    if eval_changed:
        ann_out = _write_clean_copy(path, data, repaired, dropped, bad_image_ids, skeleton, cache_dir)

    n = len(kept)
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
        source=path,
        ann_file=ann_out,
        skipped=skipped,
    )
    log_summary(result, EXPECTED_SKIPS)
    return result


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


def _write_clean_copy(path: str, data: dict, repaired: dict, dropped: set, bad_image_ids: set,
                      skeleton: Skeleton, cache_dir) -> str:
    """A COCO file that evaluates exactly the instances this reader produced."""
    st = os.stat(path)
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}|{skeleton.name}|{sorted(bad_image_ids)}|v{_CLEAN_VERSION}"
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
