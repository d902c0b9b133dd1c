"""Data specs: the strings `kpose.train(data=...)` accepts, and loading them.

Spec strings:

* ``"synthetic"`` or ``"synthetic:ROOT"``: kpose's embedded dataset
  (`kpose.data.synthetic.ensure_dataset`), which has its own train and val splits.
* ``"coco:ANN_JSON:IMAGE_DIR"``: a COCO keypoints file and its image folder.
* ``"mpii:LIST_JSON:IMAGE_DIR"``: an MPII list file (HRNet/mmpose) and its images.

Relative paths are resolved against the current directory when parsed.
On Windows, drive letters work (``coco:C:\\ann.json:D:\\images``): a one-letter
field followed by a rooted path is read as a drive, not split.

Splits: `data` is a spec string or a dict ``{"train": spec, "val": spec}``.
The rule is one and the same for both forms: a split takes the spec given for
it, and "val" falls back to the "train" spec when none is given (a plain string
gives the train spec). With "synthetic", each split reads its own part of the
dataset. With a coco/mpii file, the fallback validates on the training data:
allowed (handy for smoke tests and overfitting checks) but logged as a warning,
because such metrics measure fit, not generalisation.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from kpose.data.images import DataError
from kpose.data.records import Instances

log = logging.getLogger(__name__)

FORMATS = {
    "synthetic": "synthetic[:ROOT]",
    "coco": "coco:ANN_JSON:IMAGE_DIR",
    "mpii": "mpii:LIST_JSON:IMAGE_DIR",
}
SPLITS = ("train", "val")


def _split_fields(rest: str, windows: bool = os.name == "nt") -> list[str]:
    """Split at colons; on Windows a one-letter field followed by a rooted path is a drive ("C:\\x")."""
    pieces = rest.split(":")
    if not windows:
        return pieces
    fields: list[str] = []
    i = 0
    while i < len(pieces):
        piece = pieces[i]
        if (len(piece) == 1 and piece.isalpha() and i + 1 < len(pieces)
                and pieces[i + 1][:1] in ("\\", "/")):
            piece = f"{piece}:{pieces[i + 1]}"
            i += 1
        fields.append(piece)
        i += 1
    return fields


def _formats_text() -> str:
    return ", ".join(f"'{v}'" for v in FORMATS.values())


def parse_data_spec(spec: str) -> dict:
    """Parse a spec string into {"format": ..., paths...} with absolute paths.

    "synthetic[:ROOT]" -> {"format": "synthetic", "root": abs path or None};
    "coco:ANN:IMAGES" -> {"format": "coco", "ann_file", "image_dir"};
    "mpii:LIST:IMAGES" -> {"format": "mpii", "list_file", "image_dir"}.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"data spec {spec!r} is not a non-empty string. Fix: use one of {_formats_text()}.")
    spec = spec.strip()
    prefix, _, rest = spec.partition(":")
    kind = prefix.lower()
    if kind not in FORMATS:
        hint = ""
        if os.path.splitext(spec)[1].lower() == ".json":
            hint = f" It looks like a path: write 'coco:{spec}:IMAGE_DIR' or 'mpii:{spec}:IMAGE_DIR'."
        raise DataError(f"unknown data spec {spec!r}: unknown format {prefix!r}.{hint} "
                        f"Fix: use one of {_formats_text()}.")
    if kind == "synthetic":
        return {"format": "synthetic", "root": os.path.abspath(os.path.expanduser(rest)) if rest else None}
    parts = _split_fields(rest)
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise DataError(f"data spec {spec!r}: expected '{FORMATS[kind]}' (two paths after '{kind}:'), "
                        f"got {len(parts)} field(s). Fix: write '{FORMATS[kind]}'.")
    ann, images = (os.path.abspath(os.path.expanduser(p.strip())) for p in parts)
    key = "ann_file" if kind == "coco" else "list_file"
    return {"format": kind, key: ann, "image_dir": images}


def split_spec(data: str | Mapping[str, str], split: str) -> str:
    """The spec string used for `split` under the module's rule (see the docstring)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}. Fix: use one of {SPLITS}.")
    if isinstance(data, str):
        return data
    if isinstance(data, Mapping):
        unknown = set(data) - set(SPLITS)
        if unknown:
            raise DataError(f"data dict has unknown key(s) {sorted(unknown)}. Fix: use keys {SPLITS}.")
        if "train" not in data:
            raise DataError(f"data dict {dict(data)!r} has no 'train' spec. Fix: add "
                            f"'train': one of {_formats_text()}.")
        return data.get(split) or data["train"]
    raise DataError(f"data={data!r} is neither a spec string nor a {{'train': ..., 'val': ...}} dict. "
                    f"Fix: use one of {_formats_text()}.")


def _synthetic_paths(root: str | None) -> dict:
    try:
        from kpose.data import synthetic
    except ImportError as e:
        if e.name != "kpose.data.synthetic":
            raise
        raise DataError("data='synthetic' needs kpose.data.synthetic, which this kpose installation lacks. "
                        "Fix: reinstall kpose, or pass data='coco:ANN_JSON:IMAGE_DIR'.") from None
    paths = synthetic.ensure_dataset(root)
    missing = [k for k in ("train", "val", "train_images", "val_images") if k not in paths]
    if missing:
        raise DataError(f"kpose.data.synthetic.ensure_dataset() returned no {missing}. "
                        f"Fix: this is a kpose bug; please report it.")
    return paths


def load_instances(data: str | Mapping[str, str], split: str, *, cache_dir: str | os.PathLike | None = None,
                   check_images: bool = True, workers: int | None = None, progress: bool = True) -> Instances:
    """Read the person instances of one split of a data spec (see the module docstring)."""
    spec = split_spec(data, split)
    parsed = parse_data_spec(spec)
    kw = dict(cache_dir=cache_dir, check_images=check_images, workers=workers, progress=progress)
    if parsed["format"] == "synthetic":
        from kpose.data.coco import read_coco

        paths = _synthetic_paths(parsed["root"])
        return read_coco(paths[split], paths[f"{split}_images"], skeleton=None, **kw)
    if split == "val" and split_spec(data, "train") == spec:
        log.warning("validating on the training data %r: metrics will measure fit, not generalisation. "
                    "Pass data={'train': ..., 'val': ...} for a held-out split.", spec)
    if parsed["format"] == "coco":
        from kpose.data.coco import read_coco

        # The skeleton follows the file (17 COCO keypoints, or MPII's 16 in COCO form).
        return read_coco(parsed["ann_file"], parsed["image_dir"], skeleton=None, **kw)
    from kpose.data.mpii import read_mpii

    return read_mpii(parsed["list_file"], parsed["image_dir"], **kw)
