"""References to bytes stored inside TFRecord shards: ``/abs/dir/NAME-00003-of-00010.tfrecord@OFFSET+LENGTH``.

Data read from ``tfrecord:DIR`` (kpose.data.shards) keeps its images inside
the shard files. Its `Instances.image_paths` and `ImageRecords.ignore_paths`
hold such references instead of file paths: the tf.data pipelines see them and
stream the shards (kpose.data.shard_stream), and the few Python readers of single
images (plots, `PoseModel.predict` in evaluation, export calibration) go through
`kpose.data.images.load_image`, which reads the LENGTH bytes at OFFSET of the
shard file with one seek. OFFSET and LENGTH are those of the encoded image
(or PNG mask) as stored in the record, found when the shard was written.

No TensorFlow here: kpose.data.images, which has none, uses this module.
"""
from __future__ import annotations

import os
import re

SUFFIX = ".tfrecord"
_REF = re.compile(r"^(?P<file>.+\.tfrecord)@(?P<offset>\d+)\+(?P<length>\d+)$", re.DOTALL)


def make_ref(shard: str | os.PathLike, offset: int, length: int) -> str:
    """The reference to `length` bytes at `offset` of `shard`."""
    return f"{os.fspath(shard)}@{int(offset)}+{int(length)}"


def parse_ref(text: str | os.PathLike) -> tuple[str, int, int] | None:
    """(shard file, offset, length) of a reference; None for anything else (a plain path)."""
    m = _REF.match(os.fspath(text)) if isinstance(text, (str, os.PathLike)) else None
    return (m["file"], int(m["offset"]), int(m["length"])) if m else None


def read_ref(text: str) -> bytes:
    """The bytes a reference names. OSError (file missing, shorter than the reference says)
    naming the shard and the fix; ValueError when `text` is not a reference."""
    ref = parse_ref(text)
    if ref is None:
        raise ValueError(f"{text!r} is not a shard reference (FILE.tfrecord@OFFSET+LENGTH)")
    shard, offset, length = ref
    try:
        with open(shard, "rb") as f:
            f.seek(offset)
            data = f.read(length)
    except FileNotFoundError:
        raise FileNotFoundError(f"{shard}: shard file not found (named by {text}). Fix: keep the shard "
                                f"folder where it was read from, or read it again") from None
    if len(data) != length:
        raise OSError(f"{shard}: {len(data)} bytes at offset {offset}, the reference {text} says {length}: the "
                      f"shard is truncated or was replaced after it was read. Fix: pack it again "
                      f"(kpose data pack) and restart")
    return data


def split_refs(paths) -> tuple[list[str], bool]:
    """(the shard files the references of `paths` name, sorted; True) when every entry is a
    reference, ([], False) when none is; a ValueError for a mix (one table, one kind)."""
    files, plain = set(), 0
    for p in paths:
        if not p:
            continue  # '' (no ignore mask) is neither
        ref = parse_ref(str(p))
        if ref is None:
            plain += 1
        else:
            files.add(ref[0])
    if files and plain:
        raise ValueError(f"{plain} of {len(paths)} image entries are file paths and the rest shard references: "
                         f"a table reads its images from one kind of source. Fix: load it from one data spec")
    return sorted(files), bool(files)
