"""tf.data over TFRecord shards: the rows of an in-memory table, each with its image's bytes.

A table read from ``tfrecord:DIR`` (kpose.data.shards) names its images by
references into the shard files (kpose.data.shard_refs). Reading those one by
one would be random I/O; instead the shards are streamed whole: the files the
table's rows need, in a seeded order per pass, are read in parallel and
interleaved (`Dataset.interleave` of `TFRecordDataset`s, deterministic), each
record's id and bytes are parsed in TF ops (a batch of records at a time), and
each record is joined to the table's rows of that image by image id (a
sorted-id search, no per-sample Python). A top-down table has one row per
person, so one record gives several rows (its image is decoded once per row, as
the file path does); records of images without rows (images without people, a
subset) give none.

The columns of each row are gathered from the table in the same map, so the
pipelines (kpose.data.pipeline, kpose.data.bottom_up) treat a shard row like a
file-path row whose bytes are already read.
"""
from __future__ import annotations

import numpy as np

from kpose._tf import tf
from kpose.data.shard_refs import split_refs
from kpose.data.tfrecords import parse_stream_records

AUTOTUNE = tf.data.AUTOTUNE
# Shard files read at once: enough to mix images of several files and keep the disk busy.
CYCLE_LENGTH = 8
# Records parsed per op (vectorised parsing; the batch is undone right after).
PARSE_BATCH = 32


def in_shards(image_paths) -> bool:
    """True when a table's images are shard references (stream them), False for file paths."""
    return split_refs(image_paths)[1]


def _record_batches(files: list[str], seed: int | None, repeat: bool) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(files, tf.string))
    if seed is not None:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(CYCLE_LENGTH, len(files)), block_length=1,
                       num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(PARSE_BATCH).map(parse_stream_records, num_parallel_calls=AUTOTUNE, deterministic=True)


def shard_records(files: list[str], seed: int | None = None, repeat: bool = False) -> tf.data.Dataset:
    """Parsed records {"image/id", "image/encoded", "ignore/encoded"} of `files`, interleaved.

    seed: shuffle the file order, anew each pass (None: the files in order). The files come
    from the table (the index's, restricted to the ones its rows need) rather than a glob
    (`Dataset.list_files`), so stray or stale files in the folder are never read.
    """
    return _record_batches(files, seed, repeat).unbatch()


def shard_rows(cols: dict[str, np.ndarray], image_paths, image_ids, seed: int | None = None,
               repeat: bool = False, shuffle_buffer: int = 0) -> tf.data.Dataset:
    """Every row of a shard table once per pass: dicts of its `cols` plus "encoded" (the
    image's bytes) and "ignore_encoded" (its mask's PNG bytes, b"" when none).

    seed: shuffled file order, then `shuffle_buffer` rows shuffled (rows of one image
    arrive together: the buffer mixes them with other images'); None: shard order, for
    evaluation. repeat: pass after pass, endless.
    """
    files, _ = split_refs(image_paths)
    ids = np.asarray(image_ids, np.int64)
    if len(ids) == 0 or not files:
        raise ValueError("shard_rows: the table has no rows in shards. Fix: check the data spec's summary.")
    # Group the rows by image id: rows of image g are order[start[g] : start[g] + count[g]].
    uniq, inverse = np.unique(ids, return_inverse=True)
    order = np.argsort(inverse, kind="stable").astype(np.int64)
    count = np.bincount(inverse, minlength=len(uniq)).astype(np.int64)
    start = (np.cumsum(count) - count).astype(np.int64)
    uniq_t, order_t, count_t, start_t = (tf.constant(a) for a in (uniq, order, count, start))
    columns = {k: tf.constant(v) for k, v in cols.items()}

    def join(rec):
        """A batch of records -> the rows of their images (none for images without rows)."""
        g = tf.minimum(tf.searchsorted(uniq_t, rec["image/id"], out_type=tf.int64), len(uniq) - 1)
        n = tf.where(tf.gather(uniq_t, g) == rec["image/id"], tf.gather(count_t, g), tf.constant(0, tf.int64))
        first = tf.gather(start_t, g)
        return {"row": tf.gather(order_t, tf.ragged.range(first, first + n).flat_values),
                "encoded": tf.repeat(rec["image/encoded"], n), "ignore_encoded": tf.repeat(rec["ignore/encoded"], n)}

    def gather(r):
        return {**{k: tf.gather(v, r["row"]) for k, v in columns.items()},
                "encoded": r["encoded"], "ignore_encoded": r["ignore_encoded"]}

    ds = _record_batches(files, seed, repeat).map(join, num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
    if seed is not None and shuffle_buffer > 1:
        ds = ds.shuffle(min(int(shuffle_buffer), len(ids)), seed=seed, reshuffle_each_iteration=True)
    return ds.map(gather, num_parallel_calls=AUTOTUNE, deterministic=True)


def shuffled_rows(cols: dict[str, np.ndarray], image_paths, image_ids, seed: int, shuffle_buffer: int,
                  path_columns: tuple[str, ...] = ("path",)) -> tf.data.Dataset:
    """Endless, seeded-shuffled rows of a training table: from the table itself (images read by
    path later), or streamed from its shards (images inside the rows; `path_columns` dropped)."""
    if in_shards(image_paths):
        cols = {k: v for k, v in cols.items() if k not in path_columns}
        return shard_rows(cols, image_paths, image_ids, seed=seed, repeat=True, shuffle_buffer=shuffle_buffer)
    ds = tf.data.Dataset.from_tensor_slices(cols)
    return ds.shuffle(min(shuffle_buffer, len(image_ids)), seed=seed, reshuffle_each_iteration=True).repeat()
