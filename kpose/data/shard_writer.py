"""Writing a shard folder (see kpose.data.tfrecords for the format) one image at a time.

`ShardSetWriter` holds no image longer than it takes to write its record: the
annotations file is streamed to two temporary files (its image entries and its
annotation entries) that `finish` joins, so memory does not grow with the data.
"""
from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from kpose._tf import tf
from kpose.data.images import DataError
from kpose.data.tfrecords import FORMAT, INDEX, VERSION, annotations_name, encode_record, shard_name
from kpose.skeletons import Skeleton
from kpose.version import __version__

# A TFRecord is: length (8 bytes), its CRC (4), the data, the data's CRC (4).
_HEAD, _TAIL = 12, 4


def f32(values) -> list[float]:
    """float32 values as the shortest decimals that read back as the same float32: the
    annotations file stays small and loading it gives exactly what the records hold."""
    return [float(str(v)) for v in np.asarray(values, np.float32).ravel()]


class ShardSetWriter:
    """Writes NAME-00000-of-000NN.tfrecord files into `folder`, then the annotations file and index."""

    def __init__(self, folder: Path, name: str, num_shards: int, skeleton: Skeleton):
        self.folder, self.name, self.num_shards, self.skeleton = Path(folder), name, max(int(num_shards), 1), skeleton
        self.shards: list[dict] = []
        self.counts: Counter = Counter()
        self._writer = None
        self._images = open(self.folder / ".images.part", "w", encoding="utf-8")
        self._anns = open(self.folder / ".annotations.part", "w", encoding="utf-8")
        self._first_image = self._first_ann = True

    def open_shard(self, i: int) -> None:
        """Start shard `i` (shards are written in order, each once)."""
        self.close_shard()
        if i != len(self.shards) or i >= self.num_shards:
            raise ValueError(f"shard {i} opened out of order (next is {len(self.shards)} of {self.num_shards})")
        file = shard_name(self.name, i, self.num_shards)
        self._writer = tf.io.TFRecordWriter(str(self.folder / file))
        self.shards.append({"file": file, "images": 0, "people": 0, "bytes": 0})

    def close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            entry = self.shards[-1]
            size = (self.folder / entry["file"]).stat().st_size
            if size != entry["bytes"]:  # the offsets in the annotations file would be wrong
                raise DataError(f"{self.folder / entry['file']}: wrote {size} bytes, expected {entry['bytes']}: "
                                f"TFRecordWriter framing is not what kpose assumes. Fix: report this kpose bug.")

    def add(self, image: dict, encoded: bytes, mask: bytes, ignore_count: int, persons: list[dict],
            people: int) -> None:
        """One image's record. image: id, file_name, width, height; persons: every annotation
        to store (see kpose.data.tfrecords), of which `people` train."""
        if self._writer is None:
            raise ValueError("add() before open_shard()")
        data, (i_at, i_len), (m_at, m_len) = encode_record(image, encoded, mask, ignore_count, persons)
        entry = self.shards[-1]
        start = entry["bytes"] + _HEAD
        self._writer.write(data)
        entry["bytes"] += _HEAD + len(data) + _TAIL
        entry["images"] += 1
        entry["people"] += people
        self.counts["images"] += 1
        self.counts["people"] += people
        self.counts["images_with_people"] += people > 0
        self.counts["ignore_regions"] += ignore_count
        self.counts["annotations"] += len(persons)
        row = {"id": image["id"], "file_name": str(image["file_name"]), "width": int(image["width"]),
               "height": int(image["height"]), "kpose_shard": len(self.shards) - 1,
               "kpose_image": [start + i_at, i_len], "kpose_ignore": [start + m_at, m_len] if m_len else None,
               "kpose_ignore_count": int(ignore_count)}
        self._images.write(("" if self._first_image else ",\n") + json.dumps(row))
        self._first_image = False
        for p in persons:
            ann = {"id": p["id"], "image_id": image["id"], "category_id": 1, "iscrowd": int(p["iscrowd"]),
                   "num_keypoints": int(p["num_keypoints"]), "keypoints": f32(p["keypoints"]),
                   "bbox": f32(p["bbox"]), "area": f32([p["area"]])[0]}
            self._anns.write(("" if self._first_ann else ",\n") + json.dumps(ann))
            self._first_ann = False

    def finish(self, meta: dict) -> dict:
        """Close the last shard, join the annotations file, write the index (last: a folder with an
        index is complete). meta: source, split, complete_images, skipped, ignored, ... Returns the index."""
        self.close_shard()
        while len(self.shards) < self.num_shards:  # buckets that ended up empty still get their file
            self.open_shard(len(self.shards))
            self.close_shard()
        self._images.close()
        self._anns.close()
        ann_file = annotations_name(self.name)
        categories = [{"id": 1, "name": "person", "supercategory": "person",
                       "keypoints": list(self.skeleton.keypoints),
                       "skeleton": [[a + 1, b + 1] for a, b in self.skeleton.limbs]}]  # COCO counts from 1
        with open(self.folder / ann_file, "w", encoding="utf-8") as out:
            out.write(json.dumps({"info": {"description": f"kpose shards of {meta.get('source')}"},
                                  "categories": categories})[:-1])
            for key, part in (("images", ".images.part"), ("annotations", ".annotations.part")):
                out.write(f', "{key}": [\n')
                with open(self.folder / part, encoding="utf-8") as f:
                    shutil.copyfileobj(f, out)
                out.write("\n]")
                os.remove(self.folder / part)
            out.write("}\n")
        index = {"format": FORMAT, "version": VERSION, "name": self.name, **meta,
                 "skeleton": self.skeleton.to_dict(), "annotations": ann_file,
                 "counts": dict(self.counts), "shards": self.shards, "kpose_version": __version__}
        tmp = self.folder / (INDEX + ".tmp")
        tmp.write_text(json.dumps(index, indent=1), encoding="utf-8")
        os.replace(tmp, self.folder / INDEX)
        return index
