"""Data specs: the strings `kpose.train(data=...)` accepts, and loading them.

Spec strings:

* ``"synthetic"`` or ``"synthetic:ROOT"``: kpose's embedded dataset
  (`kpose.data.synthetic.ensure_dataset`), which has its own train and val splits.
* ``"synthetic:crowd"`` or ``"synthetic:crowd:ROOT"``: its crowd variant, 3-10
  overlapping people per image (for multi-person grouping); too-hidden people
  are keypoint-less annotations, i.e. ignore regions for bottom-up training.
  (A root folder literally named "crowd" is written "synthetic:./crowd".)
* ``"coco:ANN_JSON:IMAGE_DIR"``: a COCO keypoints file and its image folder.
* ``"mpii:LIST_JSON:IMAGE_DIR"``: an MPII list file (HRNet/mmpose) and its images.
* ``"coco2017"``, ``"coco2017-train"``, ``"coco2017-val"``: the real COCO 2017 keypoints by
  name, downloaded once into the kpose cache (kpose.data.coco2017) and then read as
  "coco:ANN:IMAGES"; plain "coco2017" reads train2017 for training and val2017 for
  validation, like "synthetic" reads its own splits.
* ``"tfrecord:DIR"``: a shard folder written by ``kpose data pack SPEC --out DIR``
  (kpose.data.pack): the same tables as the source spec's reader, images streamed
  from the shards (kpose.data.shards). Top-down and bottom-up (when packed from
  COCO-format data) both train and evaluate from it.

Readers: `load_instances` gives one row per person (top-down); `load_images`
gives one row per image with all its people and ignore regions (bottom-up,
COCO-format data only, packed or not: MPII lists label one person per record).

Relative paths are resolved against the current directory when parsed.
On Windows, drive letters work (``coco:C:\\ann.json:D:\\images``): a one-letter
field followed by a rooted path is read as a drive, not split.

Splits: `data` is a spec string or a dict ``{"train": spec, "val": spec}``.
The rule is one and the same for both forms: a split takes the spec given for
it, and "val" falls back to the "train" spec when none is given (a plain string
gives the train spec). With "synthetic", each split reads its own part of the
dataset. With a coco/mpii file or a shard folder, the fallback validates on the training data:
allowed (handy for smoke tests and overfitting checks) but logged as a warning,
because such metrics measure fit, not generalisation.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from kpose.data import synthetic
from kpose.data.coco import read_coco
from kpose.data.coco2017 import ensure_coco2017
from kpose.data.coco_images import read_coco_images
from kpose.data.images import DataError
from kpose.data.mpii import read_mpii
from kpose.data.records import ImageRecords, Instances
from kpose.data.shards import read_shard_images, read_shard_instances

log = logging.getLogger(__name__)

FORMATS = {
    "synthetic": "synthetic[:crowd][:ROOT]",
    "coco": "coco:ANN_JSON:IMAGE_DIR",
    "mpii": "mpii:LIST_JSON:IMAGE_DIR",
    "tfrecord": "tfrecord:SHARD_DIR",
    "coco2017": "coco2017[-train|-val]",
}
# Named datasets: spec -> the split it reads (None: the split asked for).
NAMED = {"coco2017": None, "coco2017-train": "train", "coco2017-val": "val"}
SPLITS = ("train", "val")
CROWD = "crowd"  # "synthetic:crowd[:ROOT]" selects the crowd variant


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

    "synthetic[:crowd][:ROOT]" -> {"format": "synthetic", "root": abs path or None, "crowd": bool};
    "coco:ANN:IMAGES" -> {"format": "coco", "ann_file", "image_dir"};
    "mpii:LIST:IMAGES" -> {"format": "mpii", "list_file", "image_dir"};
    "tfrecord:DIR" -> {"format": "tfrecord", "dir"}.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"data spec {spec!r} is not a non-empty string. Fix: use one of {_formats_text()}.")
    spec = spec.strip()
    if spec.lower() in NAMED:
        return {"format": "coco2017", "split": NAMED[spec.lower()]}
    prefix, _, rest = spec.partition(":")
    kind = prefix.lower()
    if kind not in FORMATS:
        hint = ""
        if os.path.splitext(spec)[1].lower() == ".json":
            hint = f" It looks like a path: write 'coco:{spec}:IMAGE_DIR' or 'mpii:{spec}:IMAGE_DIR'."
        raise DataError(f"unknown data spec {spec!r}: unknown format {prefix!r}.{hint} "
                        f"Fix: use one of {_formats_text()}.")
    if kind == "synthetic":
        variant, sep, root = rest.partition(":")
        crowd = variant == CROWD
        if not crowd:
            root = rest
        return {"format": "synthetic", "root": os.path.abspath(os.path.expanduser(root)) if root else None,
                "crowd": crowd}
    if kind == "tfrecord":
        if not rest.strip():
            raise DataError(f"data spec {spec!r}: expected '{FORMATS[kind]}' (the folder after 'tfrecord:'). "
                            f"Fix: write '{FORMATS[kind]}', the --out folder of `kpose data pack`.")
        return {"format": kind, "dir": os.path.abspath(os.path.expanduser(rest.strip()))}
    parts = _split_fields(rest)
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise DataError(f"data spec {spec!r}: expected '{FORMATS[kind]}' (two paths after '{kind}:'), "
                        f"got {len(parts)} field(s). Fix: write '{FORMATS[kind]}'.")
    ann, images = (os.path.abspath(os.path.expanduser(p.strip())) for p in parts)
    key = "ann_file" if kind == "coco" else "list_file"
    return {"format": kind, key: ann, "image_dir": images}


def resolve_named(spec: str, split: str, progress: bool = True) -> str:
    """A named dataset ("coco2017[-train|-val]") as the "coco:ANN:IMAGES" spec of its files,
    downloaded into the kpose cache first if needed; any other spec as given."""
    if not isinstance(spec, str) or spec.strip().lower() not in NAMED:
        return spec
    ann, images = ensure_coco2017(NAMED[spec.strip().lower()] or split, progress=progress)
    return f"coco:{ann}:{images}"


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


def synthetic_paths(parsed: dict) -> dict:
    """The annotation files and image folders of a parsed "synthetic" spec (made on first use)."""
    paths = synthetic.ensure_dataset(parsed["root"], crowd=parsed["crowd"])
    missing = [k for k in ("train", "val", "train_images", "val_images") if k not in paths]
    if missing:
        raise DataError(f"kpose.data.synthetic.ensure_dataset() returned no {missing}. "
                        f"Fix: this is a kpose bug; please report it.")
    return paths


def _warn_if_train_reused(data: str | Mapping[str, str], split: str, spec: str) -> None:
    parsed = parse_data_spec(spec)
    if parsed["format"] == "synthetic" or (parsed["format"] == "coco2017" and parsed["split"] is None):
        return  # each split reads its own part
    if split == "val" and split_spec(data, "train") == spec:
        log.warning("validating on the training data %r: metrics will measure fit, not generalisation. "
                    "Pass data={'train': ..., 'val': ...} for a held-out split.", spec)


def load_instances(data: str | Mapping[str, str], split: str, *, cache_dir: str | os.PathLike | None = None,
                   check_images: bool = True, workers: int | None = None, progress: bool = True,
                   skeleton=None) -> Instances:
    """Read the person instances of one split of a data spec (see the module docstring).

    skeleton (COCO-format data): None reads a built-in layout the file matches; "from-data"
    (or a SkeletonRequest) reads the file's own keypoints, limbs and flip pairs.
    """
    spec = split_spec(data, split)
    _warn_if_train_reused(data, split, spec)
    spec = resolve_named(spec, split, progress)
    parsed = parse_data_spec(spec)
    kw = dict(cache_dir=cache_dir, check_images=check_images, workers=workers, progress=progress)
    if parsed["format"] == "synthetic":
        paths = synthetic_paths(parsed)
        return read_coco(paths[split], paths[f"{split}_images"], skeleton=skeleton, **kw)
    if parsed["format"] == "tfrecord":
        # The skeleton was resolved when packing (from the data where asked) and is stored in full.
        return read_shard_instances(parsed["dir"])
    if parsed["format"] == "coco":
        # The skeleton follows the file (17 COCO keypoints, or MPII's 16 in COCO form).
        return read_coco(parsed["ann_file"], parsed["image_dir"], skeleton=skeleton, **kw)
    if skeleton is not None:
        raise DataError(f"data spec {spec!r}: an MPII list file has the MPII-16 skeleton; a skeleton from "
                        f"the data is read from COCO-format files only")
    return read_mpii(parsed["list_file"], parsed["image_dir"], **kw)


def load_images(data: str | Mapping[str, str], split: str, *, cache_dir: str | os.PathLike | None = None,
                check_images: bool = True, workers: int | None = None, progress: bool = True,
                skeleton=None) -> ImageRecords:
    """Read one split as image-level records for bottom-up training: every image's people and ignore mask.

    COCO-format specs only ("synthetic[:crowd]", "coco:..." and shards packed from them); an MPII list
    labels one person per record, not every person in the image, so it raises.
    """
    spec = split_spec(data, split)
    if parse_data_spec(spec)["format"] != "mpii":  # which raises below
        _warn_if_train_reused(data, split, spec)
    spec = resolve_named(spec, split, progress)
    parsed = parse_data_spec(spec)
    kw = dict(cache_dir=cache_dir, check_images=check_images, workers=workers, progress=progress)
    if parsed["format"] == "synthetic":
        paths = synthetic_paths(parsed)
        return read_coco_images(paths[split], paths[f"{split}_images"], skeleton=skeleton, **kw)
    if parsed["format"] == "mpii":
        raise DataError(f"data spec {spec!r}: MPII list files annotate single persons, not every person "
                        f"in an image, so they cannot train a bottom-up model (unlabelled people would "
                        f"be taught as background). Fix: use a COCO-format dataset "
                        f"('coco:ANN_JSON:IMAGE_DIR' or 'synthetic'), or train a top-down model.")
    if parsed["format"] == "tfrecord":
        return read_shard_images(parsed["dir"])
    return read_coco_images(parsed["ann_file"], parsed["image_dir"], skeleton=skeleton, **kw)
