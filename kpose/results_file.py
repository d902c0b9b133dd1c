"""The `kpose predict --json` file: JSONL (or COCO results), written a line per image and
flushed, read back by --resume. Resuming keeps an 8-byte hash per file already written, so
a file of millions of lines costs megabytes, not its paths."""
from __future__ import annotations

import hashlib
import json
import os
from array import array
from pathlib import Path

import numpy as np

from kpose.data.images import DataError
from kpose.pose_model import PoseModel

HEADER_KEY = "kpose_predictions"


def _key(file: str) -> int:
    return int.from_bytes(hashlib.blake2b(file.encode(), digest_size=8).digest(), "little")


class ResultsFile:
    """The --json output, written a line per image and flushed, so a killed run loses at most
    the line it was writing. JSONL: a header line {"kpose_predictions": 1, "keypoints": names,
    "limbs": pairs, "model": ...}, then {"file", "width", "height", "poses": [{"score", "box",
    "keypoints"}]} per image. coco: a JSON array of COCO keypoint results with "file" added,
    one image's results a line between "[" and "]" (an image without people has none, so a
    resumed run predicts it again)."""

    def __init__(self, path: str | os.PathLike, model: PoseModel, coco: bool = False, resume: bool = False,
                 model_name: str | None = None):
        self.path, self.coco = Path(path), coco
        self.names = list(model.skeleton.keypoints)
        self._done = np.zeros(0, np.uint64)
        self._entries = False
        if resume and self.path.is_file():
            self._read_back()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")
        self._f = open(self.path, "a", encoding="utf-8")
        if self.path.stat().st_size == 0:
            self._write("[\n" if coco else json.dumps(
                {HEADER_KEY: 1, "keypoints": self.names, "limbs": [list(pair) for pair in model.skeleton.limbs],
                 "model": model_name or f"{model.config['family']}/{model.config['variant']}"}) + "\n")

    def _read_back(self) -> None:
        """Keys of the files already written; a truncated last line (a killed run) and a
        closing "]" are cut off so that appending continues the file."""
        keys, good_end, offset = array("Q"), 0, 0
        with open(self.path, "rb+") as f:
            size = os.fstat(f.fileno()).st_size
            for n, raw in enumerate(f, 1):
                offset += len(raw)
                text = raw.decode("utf-8", "replace").strip()
                if not raw.endswith(b"\n") or text == "]":
                    break
                try:
                    files = self._files_of(text, n)
                except DataError:
                    raise
                except (ValueError, KeyError, TypeError):
                    if offset < size:
                        raise DataError(f"{self.path}, line {n}: not a kpose prediction line. Fix: --resume "
                                        f"continues a file this command wrote; give another --json file") from None
                    break  # the last line, cut short
                keys.extend(_key(s) for s in files)
                good_end = offset
            f.truncate(good_end)
        self._done = np.sort(np.frombuffer(keys, np.uint64)) if keys else self._done
        self._entries = bool(keys)

    def _files_of(self, text: str, n: int) -> list[str]:
        if self.coco:
            if n == 1:
                if text != "[":
                    raise ValueError(text)
                return []
            return [e["file"] for e in json.loads("[" + text.lstrip(",") + "]")]
        line = json.loads(text)
        if n == 1:
            if HEADER_KEY not in line:
                raise ValueError(text)
            if line["keypoints"] != self.names:
                raise DataError(f"{self.path}: written with keypoints {line['keypoints']}; this model predicts "
                                f"{self.names}. Fix: --resume with the model that wrote it, or another --json file.")
            return []
        return [line["file"]]

    def holds(self, file: str) -> bool:
        """True when --resume found `file` already written."""
        if not len(self._done):
            return False
        k = np.uint64(_key(file))
        i = np.searchsorted(self._done, k)
        return bool(i < len(self._done) and self._done[i] == k)

    def write(self, index: int, record: dict) -> None:
        """One image's record (index: its position in the input order, the COCO id fallback)."""
        if not self.coco:
            self._write(json.dumps(record) + "\n")
            return
        stem = Path(record["file"]).stem
        # COCO ids are numbers: the file name's when it is one (COCO's own images), else the
        # file's position in the input order, which a resumed run gives it again.
        image_id = int(stem) if stem.isdigit() else index
        entries = [json.dumps({"image_id": image_id, "category_id": 1, "score": p["score"],
                               "keypoints": [v for k in p["keypoints"] for v in k], "file": record["file"]})
                   for p in record["poses"]]
        if entries:  # an image without people has no results line
            self._write(("," if self._entries else "") + ",".join(entries) + "\n")
            self._entries = True

    def _write(self, text: str) -> None:
        self._f.write(text)
        self._f.flush()

    def close(self) -> None:
        """Close the file (COCO: after its closing "]", which a resumed run takes off again)."""
        if self.coco:
            self._write("]\n")
        self._f.close()
