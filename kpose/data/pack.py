"""`kpose data pack`: a data spec into sharded TFRecords (format: kpose.data.tfrecords).

Memory stays bounded at any dataset size. A COCO-format file is never loaded
whole (`json.load` of COCO train's 450 MB takes several GB): it is streamed
(kpose.data.json_stream) and its entries are spilled, as JSON lines, into one
temporary bucket per shard: image i goes to bucket i // shard_size, an annotation
to its image's bucket. Each bucket, a few hundred images with their annotations,
is then read by the same code as `read_coco` and `read_coco_images`
(kpose.data.coco_scan: validation, repairs, skip reasons; the same image check;
the same ignore regions), and its shard is written image by image, so at most one
image's bytes are held. What stays for the whole file is one small entry per image
and per annotation id (for routing and for the duplicate checks the readers make).

An MPII list (tens of MB even for the full dataset) is read with `read_mpii`.
"""
from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from kpose.data import image_check
from kpose.data.coco import check_scanned_images
from kpose.data.coco_images import EXPECTED_IMAGE_SKIPS, NO_PEOPLE, mask_png, merge_ignore_regions
from kpose.data.coco_scan import COCO_FIX, EXPECTED_SKIPS, _as_float, _parse_keypoints, parse_box, scan_coco_data
from kpose.data.coco_skeleton import skeleton_request
from kpose.data.images import DataError
from kpose.data.json_stream import iter_object
from kpose.data.mpii import read_mpii
from kpose.data.shard_writer import ShardSetWriter
from kpose.data.sources import parse_data_spec, resolve_named, split_spec, synthetic_paths
from kpose.data.tfrecords import INDEX, verify_shards

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 1024  # images per shard: ~150 MB of COCO photos, a good size to stream
_SPILL_CHARS = 16 << 20  # bucket lines buffered in memory before they are appended to their files


def pack(data, out: str | os.PathLike, *, split: str = "train", shard_size: int = DEFAULT_SHARD_SIZE,
         skeleton=None, cache_dir=None, workers: int | None = None, progress: bool = True,
         verify: bool = True) -> dict:
    """Pack one split of a data spec (coco, mpii, synthetic) into the shard folder `out`; return its index.

    `out` must be new, empty, or an earlier shard folder (its files are replaced). Files are
    named after the split. skeleton: as `load_instances` takes it (None: the built-in layout
    the file matches; "from-data": the file's own). verify reads every record back.
    """
    if int(shard_size) < 1:
        raise DataError(f"shard_size={shard_size}: need at least 1 image per shard.")
    spec = resolve_named(split_spec(data, split), split, progress)
    parsed = parse_data_spec(spec)
    if parsed["format"] == "tfrecord":
        raise DataError(f"data spec {spec!r} is already a shard folder. Fix: pack a coco, mpii or "
                        f"synthetic spec.")
    out = Path(out).expanduser().absolute()
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built beside `out` and moved in when complete: a failed pack leaves the folder as it was.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.pack-", dir=out.parent))
    meta = {"source": spec, "source_format": parsed["format"], "split": split}
    try:
        if parsed["format"] == "mpii":
            if skeleton is not None:
                raise DataError(f"data spec {spec!r}: an MPII list file has the MPII-16 skeleton; a skeleton "
                                f"is chosen for COCO-format files only. Fix: leave skeleton unset.")
            index = _pack_mpii(parsed, tmp, split, int(shard_size), meta, cache_dir, workers, progress)
        else:
            if parsed["format"] == "synthetic":
                paths = synthetic_paths(parsed)
                ann, image_dir = paths[split], paths[f"{split}_images"]
            else:
                ann, image_dir = parsed["ann_file"], parsed["image_dir"]
            index = _pack_coco(os.path.abspath(ann), image_dir, tmp, split, int(shard_size), skeleton, meta,
                               cache_dir, workers, progress)
        if verify:
            verify_shards(tmp)
        _install(tmp, out, index)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("packed %s (%s): %d images, %d people in %d shards into %s", spec, split, index["counts"]["images"],
             index["counts"]["people"], len(index["shards"]), out)
    return index


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder. Fix: pass a new or empty folder as --out.")
    if out.is_dir() and any(out.iterdir()) and not (out / INDEX).is_file():
        raise DataError(f"{out}: folder is not empty and holds no {INDEX} (kpose never deletes files it did "
                        f"not write). Fix: pass a new or empty folder as --out.")


def _install(tmp: Path, out: Path, index: dict) -> None:
    """Move the new shard set into `out`, removing the files an earlier one listed."""
    out.mkdir(parents=True, exist_ok=True)
    old = out / INDEX
    if old.is_file():
        try:
            previous = json.loads(old.read_text(encoding="utf-8"))
            names = [s["file"] for s in previous.get("shards", [])] + [previous.get("annotations")]
        except (ValueError, OSError, KeyError, TypeError):
            names = []
        old.unlink()  # first: a folder without an index is not read as shards meanwhile
        for name in names:  # plain names only: an index never makes kpose delete outside the folder
            if isinstance(name, str) and name and Path(name).name == name and (out / name).is_file():
                (out / name).unlink()
    for name in [s["file"] for s in index["shards"]] + [index["annotations"], INDEX]:
        os.replace(tmp / name, out / name)


# ---- COCO format (coco:, synthetic) -------------------------------------------------------

class _Buckets:
    """JSON lines per (kind, bucket) in temporary files, buffered in memory up to _SPILL_CHARS."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir()
        self.pending: dict = {}
        self.chars = 0

    def add(self, kind: str, bucket: int, raw: str) -> None:
        # Newlines in an element's text are whitespace between tokens (strings escape theirs).
        self.pending.setdefault((kind, bucket), []).append(raw.replace("\n", " ").replace("\r", " "))
        self.chars += len(raw)
        if self.chars > _SPILL_CHARS:
            self.flush()

    def flush(self) -> None:
        for (kind, bucket), lines in self.pending.items():
            with open(self.folder / f"{kind}-{bucket:06d}.jsonl", "a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        self.pending, self.chars = {}, 0

    def read(self, kind: str, bucket: int) -> list:
        path = self.folder / f"{kind}-{bucket:06d}.jsonl"
        if not path.is_file():
            return []
        with open(path, encoding="utf-8") as f:
            items = [json.loads(line) for line in f]
        path.unlink()
        return items


def _array(path: str, key: str, value) -> Iterator:
    if not isinstance(value, Iterator):
        raise DataError(f"{path}: top-level field '{key}' is a {type(value).__name__}, expected a list. "
                        f"Fix: write '{key}' as a JSON list.")
    return value


def _spill_coco(path: str, buckets: _Buckets, shard_size: int) -> tuple[int, list]:
    """Stream the file into buckets (image i to bucket i // shard_size, an annotation to its
    image's); return (number of images, categories)."""
    where: dict = {}  # image id -> bucket: the one per-image entry kept for the whole file
    ann_ids: set = set()

    def images(elements: Iterator) -> None:
        for n, (im, raw) in enumerate(elements):
            if not isinstance(im, dict) or "id" not in im:
                raise DataError(f"{path}: images[{n}] lacks required field 'id'. Fix: add 'id' to every entry "
                                f"of 'images' (COCO format).")
            if im["id"] in where:
                raise DataError(f"{path}: duplicate ids in 'images' (first: {im['id']!r}); pycocotools indexes "
                                f"by id, so duplicates would silently overwrite each other. Fix: give every "
                                f"entry of 'images' a unique 'id'.")
            where[im["id"]] = len(where) // shard_size
            buckets.add("images", where[im["id"]], raw)

    def annotations(elements: Iterator) -> None:
        for n, (a, raw) in enumerate(elements):
            if not isinstance(a, dict) or "category_id" not in a:
                raise DataError(f"{path}: annotations[{n}] lacks required field 'category_id' (or is not an "
                                f"object). Fix: set 'category_id' to the person category's id.")
            if "id" in a:  # one without is the bucket scan's error (person) or ignored (other)
                if a["id"] in ann_ids:
                    raise DataError(f"{path}: duplicate ids in 'annotations' (first: {a['id']!r}); pycocotools "
                                    f"indexes by id, so duplicates would silently overwrite each other. "
                                    f"Fix: give every entry of 'annotations' a unique 'id'.")
                ann_ids.add(a["id"])
            # An annotation of an unknown image goes to bucket 0, whose scan counts it as the readers do.
            buckets.add("annotations", where.get(a.get("image_id"), 0), raw)

    streamed = ("images", "annotations")
    seen: dict = {}
    for key, value in iter_object(path, lambda k: k in streamed, COCO_FIX):
        seen[key] = value if key == "categories" else True
        if key == "images":
            images(_array(path, key, value))
        elif key == "annotations":
            value = _array(path, key, value)
            if "images" in seen:
                annotations(value)
            else:
                seen[key] = "later"  # before 'images' (COCO's own files have it after): a second pass
    for field in ("images", "annotations", "categories"):
        if field not in seen:
            raise DataError(f"{path}: missing required top-level field '{field}'. Fix: add '{field}' (a list) "
                            f"as in COCO's person_keypoints_*.json, or pass the right file.")
    if not isinstance(seen["categories"], list):
        raise DataError(f"{path}: top-level field 'categories' is a {type(seen['categories']).__name__}, "
                        f"expected a list. Fix: write 'categories' as a JSON list.")
    if seen["annotations"] == "later":
        for key, value in iter_object(path, lambda k: k in streamed, COCO_FIX):
            if key == "annotations":
                annotations(value)
    buckets.flush()
    return len(where), seen["categories"]


def _coco_person(a: dict, k: int) -> dict:
    """A non-training person annotation (crowd, no keypoints) as the records store it."""
    kp = _parse_keypoints(a.get("keypoints"), k)
    box = parse_box(a.get("bbox"))
    return {"id": a["id"], "iscrowd": int(bool(a.get("iscrowd"))), "num_keypoints": int(a.get("num_keypoints") or 0),
            "keypoints": kp if not isinstance(kp, str) else [[0.0] * 3] * k,
            "bbox": box if box is not None else [0.0] * 4, "area": _as_float(a.get("area"))}


def _pack_coco(path: str, image_dir, tmp: Path, name: str, shard_size: int, skeleton, meta: dict,
               cache_dir, workers, progress: bool) -> dict:
    buckets = _Buckets(tmp / ".buckets")
    n_images, categories = _spill_coco(path, buckets, shard_size)
    num_shards = max(math.ceil(n_images / shard_size), 1)
    request = skeleton_request(skeleton)
    skel_arg, writer = skeleton, None
    inst_skipped, img_skipped, ignored, dropped = Counter(), Counter(), Counter(), Counter()
    for b in tqdm(range(num_shards), desc="packing shards", unit="shard", disable=not progress):
        data = {"images": buckets.read("images", b), "annotations": buckets.read("annotations", b),
                "categories": categories}
        scan = scan_coco_data(data, path, image_dir, skel_arg)
        if writer is None:
            writer = ShardSetWriter(tmp, name, num_shards, scan.skeleton)
            # Later buckets read the same layout (a bucket may hold too few people to infer it).
            skel_arg = skeleton if request is not None else scan.skeleton
        elif scan.skeleton != writer.skeleton:
            raise DataError(f"{path}: images of shard {b} resolve to skeleton {scan.skeleton.name!r}, earlier "
                            f"ones to {writer.skeleton.name!r}. Fix: pass skeleton= explicitly.")
        inst_skipped.update(scan.skipped)
        img_skipped.update(scan.skipped)
        writer.open_shard(b)
        _write_bucket(writer, scan, data["images"], cache_dir, workers, inst_skipped, img_skipped, ignored, dropped)
    shutil.rmtree(buckets.folder)
    meta.update(complete_images=True, skipped={"instances": _counts(inst_skipped), "images": _counts(+img_skipped)},
                ignored=dict(ignored), dropped_images=dict(dropped))
    _log_skips(path, inst_skipped, EXPECTED_SKIPS)
    _log_skips(path, +img_skipped, EXPECTED_IMAGE_SKIPS)
    return writer.finish(meta)


def _write_bucket(writer: ShardSetWriter, scan, images: list, cache_dir, workers, inst_skipped: Counter,
                  img_skipped: Counter, ignored: Counter, dropped: Counter) -> None:
    """One shard: the bucket's images checked as the readers check them, then written in order."""
    paths = [os.path.join(scan.image_dir, im["file_name"]) for im in images]
    decode, problems = check_scanned_images(scan, paths, cache_dir, True, workers, False)
    rows: dict = {}
    for r in scan.rows:
        rows.setdefault(r[0], {})[r[1]] = r
    others: dict = {}
    for o in scan.others:
        others.setdefault(o[0], []).append(o)
    k = scan.skeleton.num_keypoints
    for im, p in zip(images, paths):
        mine, theirs = rows.get(im["id"], {}), others.get(im["id"], [])
        if not mine:
            img_skipped[NO_PEOPLE] += 1
        if p in problems:
            reason = image_check.problem_reason(problems[p])
            if mine:  # counted as read_coco and read_coco_images count it
                inst_skipped[reason] += len(mine)
                img_skipped[reason] += 1
            else:
                dropped[reason] += 1
            continue
        mask, count = b"", 0
        if mine:  # ignore regions as read_coco_images draws them: on images that train bottom-up
            union, count = merge_ignore_regions(scan.coco, im, theirs, img_skipped, ignored)
            if count:
                buf = io.BytesIO()
                mask_png(union).save(buf, "PNG", compress_level=1)
                mask = buf.getvalue()
        kept_others = {a["id"]: scan.repaired.get(a["id"], a) for _, a, _ in theirs if a["id"] not in scan.dropped}
        persons = []
        for a in scan.coco.imgToAnns.get(im["id"], []):  # the file's order
            if a["id"] in mine:
                _, ann_id, box, kp, area, _, _ = mine[a["id"]]
                persons.append({"id": ann_id, "iscrowd": 0, "num_keypoints": int((kp[:, 2] > 0).sum()),
                                "keypoints": kp, "bbox": box, "area": area})
            elif a["id"] in kept_others:
                persons.append(_coco_person(kept_others[a["id"]], k))
        try:
            with open(decode[p], "rb") as f:
                encoded = f.read()
        except OSError as e:
            raise DataError(f"{decode[p]}: cannot read the image to pack ({e}). Fix: check the file.") from None
        writer.add(im, encoded, mask, count, persons, len(mine))


def _counts(c: Counter) -> dict:
    return {k: int(v) for k, v in sorted(c.items()) if v}


def _log_skips(source: str, skipped: Counter, expected: frozenset) -> None:
    unexpected = {r: c for r, c in skipped.items() if r not in expected and c}
    if unexpected:
        log.warning("%s: packed with skips/repairs %s", source, _counts(Counter(unexpected)))


# ---- MPII list ----------------------------------------------------------------------------

def _pack_mpii(parsed: dict, tmp: Path, name: str, shard_size: int, meta: dict, cache_dir, workers,
               progress: bool) -> dict:
    inst = read_mpii(parsed["list_file"], parsed["image_dir"], cache_dir=cache_dir, workers=workers,
                     progress=progress)
    with open(inst.ann_file, encoding="utf-8") as f:  # the reader's COCO form names the image files
        names = {im["id"]: im["file_name"] for im in json.load(f)["images"]}
    groups: dict = {}
    for i, image_id in enumerate(inst.image_ids.tolist()):
        groups.setdefault(image_id, []).append(i)
    order = list(groups)
    writer = ShardSetWriter(tmp, name, max(math.ceil(len(order) / shard_size), 1), inst.skeleton)
    for n, image_id in enumerate(tqdm(order, desc="packing images", unit="img", disable=not progress)):
        if n % shard_size == 0:
            writer.open_shard(n // shard_size)
        rows = groups[image_id]
        h, w = (int(v) for v in inst.image_sizes[rows[0]])
        persons = [{"id": int(inst.ann_ids[i]), "iscrowd": 0, "num_keypoints": int((inst.keypoints[i, :, 2] > 0).sum()),
                    "keypoints": inst.keypoints[i], "bbox": inst.bboxes[i], "area": float(inst.areas[i])}
                   for i in rows]
        with open(inst.image_paths[rows[0]], "rb") as f:
            encoded = f.read()
        writer.add({"id": image_id, "file_name": names.get(image_id, ""), "width": w, "height": h}, encoded,
                   b"", 0, persons, len(rows))
    # MPII labels one person per record, not every person in an image: no bottom-up training.
    meta.update(complete_images=False, skipped={"instances": _counts(inst.skipped), "images": None}, ignored={},
                dropped_images={})
    return writer.finish(meta)
