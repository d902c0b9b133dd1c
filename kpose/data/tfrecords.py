"""The TFRecord shard format of `kpose data pack`: records, the folder index, checks.

A shard folder holds

* ``NAME-00000-of-000NN.tfrecord``: one `tf.train.Example` per image (schema below),
  images in file order, at most ``shard_size`` per file;
* ``NAME-annotations.json``: the same annotations in COCO keypoints format, without
  segmentations (ignore regions are in the records as masks), category 1; each image entry
  also says where its bytes are (``kpose_shard``, ``kpose_image``, ``kpose_ignore``: shard
  number, [offset, length] in the shard file). It is what loading reads (a few hundred MB
  at COCO train scale instead of every image byte) and the ground truth evaluation scores
  against;
* ``kpose-shards.json`` (`INDEX`): format and version, the source spec and split, the
  skeleton in full (`Skeleton.to_dict`), counts, and what the source reader skipped, by
  reason, so summaries read as for the source.

Record schema (one image; M people; K keypoints, from the index's skeleton):

``image/id`` int64, ``image/file_name`` bytes, ``image/width``, ``image/height`` int64,
``image/encoded`` the file's bytes as stored (JPEG or PNG, not re-encoded: the file the
pipeline would decode, i.e. a normalised copy where kpose.data.images made one),
``image/format`` b"jpeg" or b"png", ``ignore/encoded`` a PNG mask (255 = ignore; b"" when
none), ``ignore/count`` int64; per person, in the source's order: ``person/id``,
``person/iscrowd``, ``person/num_keypoints`` int64 [M], ``person/keypoints`` float
[M*K*3] (x, y, v in image pixels), ``person/bbox`` float [M*4] (x, y, w, h), ``person/area``
float [M]. A person trains when iscrowd == 0 and num_keypoints > 0 (COCO's rule); the others
are the regions drawn into the mask.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from kpose._tf import tf
from kpose.data.images import DataError
from kpose.skeletons import Skeleton

INDEX = "kpose-shards.json"
FORMAT = "kpose-shards"
VERSION = 1
PACK_FIX = "pack the data again with `kpose data pack SPEC --out DIR`"

IMAGE_FIELDS = {"image/id": "int", "image/file_name": "bytes", "image/width": "int", "image/height": "int",
                "image/encoded": "bytes", "image/format": "bytes", "ignore/encoded": "bytes",
                "ignore/count": "int"}
PERSON_FIELDS = {"person/id": "int", "person/iscrowd": "int", "person/num_keypoints": "int",
                 "person/keypoints": "float", "person/bbox": "float", "person/area": "float"}


def shard_name(name: str, i: int, n: int) -> str:
    return f"{name}-{i:05d}-of-{n:05d}.tfrecord"


def annotations_name(name: str) -> str:
    return f"{name}-annotations.json"


def _feature(kind: str, values) -> tf.train.Feature:
    if kind == "bytes":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))
    if kind == "int":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
    return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values, np.float32).ravel()))


def image_format(data: bytes) -> str:
    """'jpeg' or 'png' from the file's signature; '' for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return ""


def encode_record(image: dict, encoded: bytes, mask: bytes, ignore_count: int, persons: list[dict]
                  ) -> tuple[bytes, tuple[int, int], tuple[int, int]]:
    """(serialized Example, (offset, length) of the image bytes in it, same for the mask).

    image: id, file_name, width, height; persons: dicts with id, iscrowd, num_keypoints,
    keypoints [K, 3], bbox, area.
    """
    fields = {
        "image/id": [image["id"]], "image/file_name": [str(image["file_name"]).encode()],
        "image/width": [image["width"]], "image/height": [image["height"]], "image/encoded": [encoded],
        "image/format": [image_format(encoded).encode()], "ignore/encoded": [mask], "ignore/count": [ignore_count],
        "person/id": [p["id"] for p in persons], "person/iscrowd": [p["iscrowd"] for p in persons],
        "person/num_keypoints": [p["num_keypoints"] for p in persons],
        "person/keypoints": [np.asarray(p["keypoints"], np.float32).ravel() for p in persons] or [[]],
        "person/bbox": [np.asarray(p["bbox"], np.float32) for p in persons] or [[]],
        "person/area": [p["area"] for p in persons],
    }
    kinds = {**IMAGE_FIELDS, **PERSON_FIELDS}
    example = tf.train.Example(features=tf.train.Features(
        feature={k: _feature(kinds[k], np.concatenate(v) if k in ("person/keypoints", "person/bbox") else v)
                 for k, v in fields.items()}))
    # Deterministic serialisation writes the features sorted by name: "ignore/encoded" comes
    # before "image/encoded", so the first match of each (searching on after the mask) is the field.
    data = example.SerializeToString(deterministic=True)
    m_at = data.find(mask) if mask else 0
    i_at = data.find(encoded, m_at + len(mask))
    return data, (i_at, len(encoded)), (m_at, len(mask))


def decode_record(data: bytes, k: int, where: str) -> dict:
    """A serialized record as numpy (Python side: checks, tests); DataError naming `where`
    (file and record number) and the missing or malformed field."""
    try:
        feats = tf.train.Example.FromString(data).features.feature
    except Exception as e:  # a protobuf DecodeError: the bytes are no Example
        raise DataError(f"{where}: not a tf.train.Example ({e}). Fix: {PACK_FIX}") from None
    out = {}
    for name, kind in {**IMAGE_FIELDS, **PERSON_FIELDS}.items():
        if name not in feats:
            raise DataError(f"{where}: the record lacks field '{name}'. Fix: {PACK_FIX}")
        f = feats[name]
        values = {"bytes": f.bytes_list.value, "int": f.int64_list.value, "float": f.float_list.value}[kind]
        out[name] = list(values) if kind == "bytes" else np.asarray(values, np.int64 if kind == "int" else np.float32)
    m = len(out["person/id"])
    for name, width in (("person/iscrowd", 1), ("person/num_keypoints", 1), ("person/keypoints", 3 * k),
                        ("person/bbox", 4), ("person/area", 1)):
        if out[name].size != m * width:
            raise DataError(f"{where}: field '{name}' has {out[name].size} values, expected {m * width} "
                            f"({m} people x {width}). Fix: {PACK_FIX}")
    for name in IMAGE_FIELDS:
        if name != "ignore/encoded" and len(out[name]) != 1:
            raise DataError(f"{where}: field '{name}' has {len(out[name])} values, expected 1. Fix: {PACK_FIX}")
    record = {name: out[name][0] for name in IMAGE_FIELDS}
    record["ignore/encoded"] = out["ignore/encoded"][0] if out["ignore/encoded"] else b""
    record.update({name: out[name] for name in PERSON_FIELDS})
    record["person/keypoints"] = record["person/keypoints"].reshape(m, k, 3)
    record["person/bbox"] = record["person/bbox"].reshape(m, 4)
    return record


def parse_stream_records(data: tf.Tensor) -> dict[str, tf.Tensor]:
    """What the training and evaluation streams need of a batch of records [B], in TF ops: ids
    and bytes, each [B] (parsed a batch at a time: a third faster than record by record)."""
    spec = {"image/id": tf.io.FixedLenFeature([], tf.int64),
            "image/encoded": tf.io.FixedLenFeature([], tf.string),
            "ignore/encoded": tf.io.FixedLenFeature([], tf.string, default_value=b"")}
    return tf.io.parse_example(data, spec)


def read_index(folder: str | os.PathLike) -> dict:
    """The index of a shard folder, checked: DataErrors name the folder, the field and the fix."""
    folder = Path(folder)
    path = folder / INDEX
    if not folder.is_dir():
        raise DataError(f"{folder}: shard folder not found. Fix: pass the --out folder of `kpose data pack`.")
    if not path.is_file():
        raise DataError(f"{folder}: no {INDEX} in the folder, so it is not a kpose shard folder (or packing "
                        f"did not finish). Fix: {PACK_FIX}.")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: unreadable index ({e}). Fix: {PACK_FIX}.") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(f"{path}: field 'format' is {index.get('format') if isinstance(index, dict) else None!r}, "
                        f"expected {FORMAT!r}. Fix: {PACK_FIX}.")
    if index.get("version") != VERSION:
        raise DataError(f"{path}: format version {index.get('version')!r}; this kpose reads version {VERSION}. "
                        f"Fix: {PACK_FIX} with this kpose.")
    for field in ("name", "source", "skeleton", "annotations", "shards", "complete_images", "skipped"):
        if field not in index:
            raise DataError(f"{path}: missing field '{field}'. Fix: {PACK_FIX}.")
    return index


def index_skeleton(index: dict, folder) -> Skeleton:
    try:
        return Skeleton.from_dict(index["skeleton"])
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{Path(folder) / INDEX}: field 'skeleton' is not a kpose skeleton ({e}). "
                        f"Fix: {PACK_FIX}.") from None


def shard_files(folder: str | os.PathLike, index: dict) -> list[Path]:
    """The shard files of the index, checked to exist with the size they were written with
    (a truncated or replaced shard is found here, before training starts)."""
    folder = Path(folder)
    out = []
    for entry in index["shards"]:
        p = folder / entry["file"]
        if not p.is_file():
            raise DataError(f"{p}: shard file listed in {folder / INDEX} not found. Fix: copy the whole "
                            f"folder, or {PACK_FIX}.")
        if p.stat().st_size != entry["bytes"]:
            raise DataError(f"{p}: {p.stat().st_size} bytes, {INDEX} says {entry['bytes']}: the shard is "
                            f"truncated or was replaced. Fix: {PACK_FIX}.")
        out.append(p)
    return out


def verify_shards(folder: str | os.PathLike) -> dict:
    """Read every record of every shard (checksums, every field) and compare with the index.

    A corrupt shard fails training with TensorFlow's "corrupted record at N", which does not
    say which file: this names it. Returns {"images": n, "people": m}; DataError otherwise.
    """
    index = read_index(folder)
    k = index_skeleton(index, folder).num_keypoints
    images = people = 0
    for entry, path in zip(index["shards"], shard_files(folder, index)):
        n = 0
        it = iter(tf.data.TFRecordDataset(str(path)))
        while True:
            try:
                data = next(it)
            except StopIteration:
                break
            except (tf.errors.DataLossError, tf.errors.OutOfRangeError) as e:
                raise DataError(f"{path}: record {n} is corrupt ({e.message.strip()}). Fix: {PACK_FIX}.") from None
            rec = decode_record(data.numpy(), k, f"{path}: record {n}")
            people += len(rec["person/id"])
            n += 1
        if n != entry["images"]:
            raise DataError(f"{path}: {n} records, {INDEX} says {entry['images']}. Fix: {PACK_FIX}.")
        images += n
    return {"images": images, "people": people}
