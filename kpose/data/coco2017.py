"""COCO 2017 keypoints by name (`--data coco2017`): downloaded once from the official COCO
URLs into the kpose cache, sizes and checksums checked, downloads resumed, then read like
any "coco:ANN.json:IMAGES" spec.

The cache holds, under $KPOSE_CACHE/coco2017 (else ~/.cache/kpose/coco2017):
annotations/person_keypoints_{train,val}2017.json and {train,val}2017/*.jpg. An archive is
deleted once extracted (train2017.zip is 18 GB); a folder counts as complete only when
its extraction finished (a marker file), so an interrupted extraction is redone.
"""
from __future__ import annotations

import urllib.error
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from kpose.data.images import default_cache_dir
from kpose.downloads import download

SPLITS = ("train", "val")
PAGE = "https://cocodataset.org/#download"
_DONE = ".kpose-complete"


@dataclass(frozen=True)
class Archive:
    """One published archive: where it is, its size in bytes and the md5 COCO's users
    publish for it (COCO itself lists no checksums)."""

    url: str
    size: int
    md5: str


ARCHIVES = {
    "annotations": Archive("http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                           252907541, "f4bbac642086de4f52a3fdda2de5fa2c"),
    "train": Archive("http://images.cocodataset.org/zips/train2017.zip", 19336861798,
                     "cced6f7f71b7629ddf16f17bbcfab6b2"),
    "val": Archive("http://images.cocodataset.org/zips/val2017.zip", 815585330,
                   "442b8da7639aecaf257c1dceb8ba8c80"),
}


def coco2017_root() -> Path:
    return default_cache_dir() / "coco2017"


def annotation_file(root: Path, split: str) -> Path:
    return root / "annotations" / f"person_keypoints_{split}2017.json"


def ensure_coco2017(split: str, root: Path | None = None, archives: dict[str, Archive] | None = None,
                    progress: bool = True) -> tuple[Path, Path]:
    """(annotation file, image folder) of COCO 2017 `split`, downloading and extracting what
    the cache lacks. Offline: FileNotFoundError naming the URL, the cache folder and the
    manual step; a corrupt download: ValueError naming the file (nothing is kept)."""
    if split not in SPLITS:
        raise ValueError(f"COCO 2017 split {split!r}: known splits {', '.join(SPLITS)}")
    root = Path(root) if root is not None else coco2017_root()
    archives = archives or ARCHIVES
    ann = annotation_file(root, split)
    if not ann.is_file():
        zip_path = _fetch(archives["annotations"], root, progress)
        _extract(zip_path, root, [f"annotations/{annotation_file(root, s).name}" for s in SPLITS], progress)
        zip_path.unlink()
    images = root / f"{split}2017"
    if not (images / _DONE).is_file():
        zip_path = _fetch(archives[split], root, progress)
        _extract(zip_path, root, None, progress)
        (images / _DONE).write_text("extracted from " + archives[split].url + "\n")
        zip_path.unlink()
    return ann, images


def _fetch(archive: Archive, root: Path, progress: bool) -> Path:
    target = root / archive.url.rsplit("/", 1)[-1]
    if target.is_file():  # downloaded and checked, extraction interrupted
        return target
    try:
        return download(archive.url, target, md5=archive.md5, size=archive.size, what="COCO 2017",
                        progress=progress)
    except (urllib.error.URLError, OSError) as e:
        raise FileNotFoundError(
            f"--data coco2017 needs {target.name} ({archive.size / 1e9:.1f} GB) from {archive.url}, and the "
            f"download failed ({e}). Rerun when online (a partial download resumes), or fetch it by hand "
            f"from {PAGE} into {root} and rerun; or give the data as coco:ANN.json:IMAGE_DIR") from e


def _extract(zip_path: Path, root: Path, members: list[str] | None, progress: bool) -> None:
    """Extract `members` (all when None) of a verified archive into root."""
    with zipfile.ZipFile(zip_path) as z:
        names = z.namelist() if members is None else members
        missing = sorted(set(names) - set(z.namelist()))
        if missing:
            raise ValueError(f"{zip_path}: lacks {', '.join(missing)}; it is not the COCO 2017 archive kpose "
                             f"expects. Delete it and rerun")
        for name in tqdm(names, desc=f"kpose: extracting {zip_path.name}", unit="file", disable=not progress,
                         mininterval=1.0):
            z.extract(name, root)
