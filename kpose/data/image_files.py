"""Image and video files named by sources: files, folders, globs and .txt lists, expanded
lazily and in a stable order, so that a source of millions of files costs no memory
(`kpose predict` runs over them; see kpose.batch_predict)."""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from kpose.data.images import DataError
from kpose.data.video import VIDEO_SUFFIXES

# Folders and globs pick these; any file Pillow reads can still be named directly or listed.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


@dataclass(frozen=True)
class Input:
    """One file to predict: its path as given or found, and the name its drawing takes
    under --save (relative to the folder or glob root it came from, else the file name)."""

    path: str
    rel: str


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def _sorted_entries(folder: Path) -> list[tuple[str, bool]]:
    """(name, is a folder) of a folder's entries, sorted. Only names are kept: a folder of a
    million files costs its names, not a million DirEntry objects. Hidden names are skipped,
    as shells' globs do (.ipynb_checkpoints, macOS ._x.jpg forks); links to folders count as
    files (not followed: no loops)."""
    with os.scandir(folder) as it:
        return sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it if not e.name.startswith("."))


def _walk(folder: Path) -> Iterator[Path]:
    """Image files under `folder`, recursively, in name order."""
    for name, is_dir in _sorted_entries(folder):
        if is_dir:
            yield from _walk(folder / name)
        elif name.lower().endswith(IMAGE_SUFFIXES):
            yield folder / name


def _glob(base: Path, parts: tuple[str, ...]) -> Iterator[Path]:
    """Paths matching the pattern parts under `base`, lazily and sorted per folder
    (glob.iglob is lazy but unsorted; sorted(glob) would hold every match)."""
    if not parts:
        yield base
        return
    head, rest = parts[0], parts[1:]
    if head == "**":  # zero or more folders
        yield from _glob(base, rest)
        for name, is_dir in _sorted_entries(base):
            if is_dir:
                yield from _glob(base / name, parts)
        return
    if not _has_magic(head):
        if (base / head).exists():
            yield from _glob(base / head, rest)
        return
    if not base.is_dir():
        return
    for name, is_dir in _sorted_entries(base):
        if fnmatchcase(name, head) and (is_dir or not rest):
            yield from _glob(base / name, rest)


def _list_file(path: Path) -> Iterator[Input]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                p = path.parent / os.path.expanduser(line)  # an absolute line stays as it is
                yield Input(str(p), p.name)


def _expand(source: str | os.PathLike) -> Iterator[Input]:
    text = os.path.expanduser(os.fspath(source))
    p = Path(text)
    if p.is_dir():
        for f in _walk(p):
            yield Input(str(f), str(f.relative_to(p)))
    elif p.is_file() and p.suffix.lower() == ".txt":
        yield from _list_file(p)
    elif p.is_file():
        yield Input(str(p), p.name)
    elif _has_magic(text):
        parts = p.parts
        root_n = next(i for i, part in enumerate(parts) if _has_magic(part))
        root = Path(*parts[:root_n]) if root_n else Path(".")
        for f in _glob(root, parts[root_n:]):
            if f.is_file() and f.name.lower().endswith(IMAGE_SUFFIXES + VIDEO_SUFFIXES):
                yield Input(str(f), str(f.relative_to(root)))
    else:
        raise DataError(f"{text}: no such file or folder. Fix: check the path (quote a glob: 'imgs/*.jpg').")


def iter_inputs(sources: Iterable[str | os.PathLike]) -> Iterator[Input]:
    """Every file the sources name, lazily, in order: an image or video file, a folder (its
    images, recursively, sorted), a glob ('imgs/**/*.jpg'), or a .txt list of paths (one a
    line, relative to the list's folder; blank and # lines skipped). A source that names
    nothing is a DataError naming it, raised when the source is reached."""
    for source in sources:
        found = _expand(source)
        first = next(found, None)
        if first is None:
            raise DataError(f"{source}: matches no image (folders and globs take {', '.join(IMAGE_SUFFIXES)}"
                            f"; a .txt list, one path a line). Fix: check the source.")
        yield first
        yield from found


def expand_sources(sources: Iterable[str | os.PathLike]) -> Iterator[str]:
    """The paths of `iter_inputs`."""
    return (i.path for i in iter_inputs(sources))
