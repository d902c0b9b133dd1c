"""One-time validation of dataset images, before training (`check_images`).

Every image is decoded fully once; broken ones are reported (never a crash mid-training),
and every file that TensorFlow's `tf.io.decode_image(channels=3)` would not decode into
the pixels `kpose.data.images.load_image` gives gets a normalised RGB copy in a cache
directory. Results are kept in a manifest keyed by path, size, mtime and expected size,
so a second run re-checks nothing that did not change.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from PIL import Image

from kpose.data.images import (MISSING, SIZE_MISMATCH, TRANSPOSING, UNREADABLE, DataError, ImageError,
                               default_cache_dir, exif_orientation, load_image_from, open_fully)

log = logging.getLogger(__name__)

# Bump when the validation or conversion rules change: old manifest entries and
# normalised copies then stop matching and are redone.
_CHECK_VERSION = 1
# Enough to see the pattern without flooding a log with a broken folder.
_MAX_LOGGED = 20


def _png_bit_depth(path: str) -> int:
    with open(path, "rb") as f:
        head = f.read(26)
    # 8-byte signature, IHDR length + type (8), width, height (8), then the bit depth.
    return head[24] if len(head) >= 26 and head[12:16] == b"IHDR" else 8


def _is_clean(img: Image.Image, path: str, orientation: int) -> bool:
    """True when tf.io.decode_image(channels=3) yields exactly what load_image does, with no EXIF doubt."""
    if img.format not in ("JPEG", "PNG") or img.mode not in ("RGB", "L"):
        return False
    # A file with an orientation tag is decoded differently by different tools
    # (tf ignores it, OpenCV and viewers apply it): store the chosen orientation
    # in a tag-free copy so every decoder agrees with the annotations.
    if orientation != 1:
        return False
    if getattr(img, "n_frames", 1) > 1:
        return False
    if img.format == "PNG" and _png_bit_depth(path) != 8:
        return False
    return True


def _choose_exif(stored: tuple[int, int], orientation: int,
                 expected: tuple[int, int] | None) -> tuple[bool | None, tuple[int, int]]:
    """(apply_exif, final (w, h)); apply_exif None when neither orientation fits `expected`."""
    w, h = stored
    rotated = (h, w) if orientation in TRANSPOSING else (w, h)
    if expected is None:
        # Without annotated sizes, trust the tag: it is what viewers (and most
        # annotation tools) showed.
        return orientation != 1, rotated if orientation != 1 else stored
    if tuple(expected) == (w, h):
        # Stored dims match the JSON: annotations were made on stored pixels (as
        # COCO's tools and tf do). For 180-degree/mirror tags the dims cannot tell
        # the two apart and stored orientation wins by this rule too.
        return False, stored
    if orientation in TRANSPOSING and tuple(expected) == rotated:
        return True, rotated
    return None, stored


def _copy_path(cache_dir: Path, src: str, key: str, ext: str) -> Path:
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return cache_dir / "images" / f"{Path(src).stem}-{digest}{ext}"


def _inspect(path: str, expected: tuple[int, int] | None, key: str, cache_dir: Path) -> dict:
    """Validate one image; write a normalised copy when needed. Returns a manifest entry."""
    entry: dict = {"decode": None, "problem": None}
    try:
        img = open_fully(path)
    except ImageError as e:
        reason = MISSING if not os.path.isfile(path) else UNREADABLE
        entry["problem"] = f"{reason}: {e}"
        return entry
    try:
        orientation = exif_orientation(img)
        apply_exif, final = _choose_exif(img.size, orientation, expected)
        if apply_exif is None:
            entry["problem"] = (f"{SIZE_MISMATCH}: {path}: annotations say {expected[0]}x{expected[1]} "
                                f"(width x height), file is {img.size[0]}x{img.size[1]}"
                                + (f" (EXIF orientation {orientation})" if orientation != 1 else "")
                                + ". Fix: correct width/height in the annotation file or replace the image.")
            return entry
        entry["width"], entry["height"] = final
        if _is_clean(img, path, orientation):
            entry["decode"] = path
            return entry
        rgb = load_image_from(img, apply_exif)
        # Lossy sources stay lossy (JPEG q95, 4:4:4: one more generation is far
        # below augmentation noise, and files stay small); others stay lossless.
        ext = ".jpg" if img.format == "JPEG" else ".png"
        out = _copy_path(cache_dir, path, key, ext)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".{os.getpid()}.{threading.get_ident()}.tmp")
        pil = Image.fromarray(rgb, "RGB")
        if ext == ".jpg":
            pil.save(tmp, "JPEG", quality=95, subsampling=0)
        else:
            pil.save(tmp, "PNG", compress_level=1)
        os.replace(tmp, out)
        entry["decode"] = str(out)
        entry["normalised"] = f"{img.format} {img.mode}" + (f" EXIF {orientation}" if orientation != 1 else "")
        return entry
    except ImageError as e:
        entry["problem"] = f"{UNREADABLE}: {e}"
        return entry
    except OSError as e:
        # Failing to write the cache is the environment's fault, not the image's.
        raise DataError(f"cannot write a normalised copy of {path} into {cache_dir} ({e}). "
                        f"Fix: pass cache_dir= a writable directory or set KPOSE_CACHE.") from None
    finally:
        img.close()


def _manifest_path(cache_dir: Path) -> Path:
    return cache_dir / "image_check.json"


def _read_manifest(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) and data.get("version") == _CHECK_VERSION else {}
    except (OSError, ValueError):
        return {}  # no or unreadable manifest: just check again


def _write_manifest(path: Path, updates: dict) -> None:
    # Re-read right before writing so that parallel runs sharing the cache keep
    # each other's entries; the replace is atomic so readers never see half a file.
    data = _read_manifest(path)
    entries = data.get("entries", {})
    entries.update(updates)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"version": _CHECK_VERSION, "entries": entries}, f)
    os.replace(tmp, path)


def check_images(paths: Iterable[str | os.PathLike],
                 expected_sizes: Mapping[str, tuple[int, int]] | Sequence[tuple[int, int] | None] | None = None,
                 cache_dir: str | os.PathLike | None = None,
                 workers: int | None = None,
                 progress: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    """Validate dataset images once; return (ok, problems).

    ok maps each good path to the file the input pipeline should decode: the
    original when it is a plain 8-bit RGB/grayscale JPEG/PNG without EXIF
    orientation, else a normalised RGB copy in `cache_dir/images`. problems maps
    each bad path to "reason: detail" with reason one of MISSING, UNREADABLE,
    SIZE_MISMATCH.

    expected_sizes gives (width, height) per path (a mapping, or a sequence
    parallel to paths) from the annotations. EXIF rule: if the stored pixel dims
    match, the stored orientation is kept; else if the EXIF-transposed dims match,
    EXIF is applied; else the image is a size-mismatch problem. Without an
    expected size, EXIF orientation is applied.

    Results are cached in `cache_dir/image_check.json`, keyed by absolute path,
    file size, mtime and expected size, so a second run decodes nothing.
    """
    paths = [os.fspath(p) for p in paths]
    if expected_sizes is None:
        expected = {p: None for p in paths}
    elif isinstance(expected_sizes, Mapping):
        expected = {p: expected_sizes.get(p) for p in paths}
    else:
        if len(expected_sizes) != len(paths):
            raise ValueError(f"check_images: {len(expected_sizes)} expected sizes for {len(paths)} paths")
        expected = dict(zip(paths, expected_sizes))
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create image cache directory {cache} ({e}). "
                        f"Fix: pass cache_dir= a writable directory or set KPOSE_CACHE.") from None
    manifest_file = _manifest_path(cache)
    known = _read_manifest(manifest_file).get("entries", {})

    ok: dict[str, str] = {}
    problems: dict[str, str] = {}
    todo: list[tuple[str, str]] = []
    for p in dict.fromkeys(paths):  # unique, in order
        exp = expected[p]
        exp = None if exp is None else [int(exp[0]), int(exp[1])]
        try:
            st = os.stat(p)
        except OSError:
            problems[p] = f"{MISSING}: {p}: image file not found. Fix: check the image directory and file name."
            continue
        absolute = os.path.abspath(p)
        key = f"{absolute}|{st.st_size}|{st.st_mtime_ns}|{exp}|v{_CHECK_VERSION}"
        hit = known.get(absolute)
        if hit and hit.get("key") == key and (hit.get("problem") or os.path.isfile(hit.get("decode") or "")):
            _record(p, hit, ok, problems)
        else:
            todo.append((p, key))

    if todo:
        from tqdm.auto import tqdm

        n_workers = workers or min(16, os.cpu_count() or 4)
        updates: dict = {}
        bar = tqdm(total=len(todo), desc="checking images", unit="img",
                   disable=not progress or len(todo) < 64, leave=False)
        try:
            with ThreadPoolExecutor(max_workers=n_workers) as pool:
                futures = {pool.submit(_inspect, p, None if expected[p] is None else tuple(expected[p]),
                                       key, cache): (p, key) for p, key in todo}
                for fut in as_completed(futures):
                    p, key = futures[fut]
                    entry = fut.result()
                    entry["key"] = key
                    updates[os.path.abspath(p)] = entry
                    _record(p, entry, ok, problems)
                    bar.update(1)
        finally:
            bar.close()
            if updates:
                try:
                    _write_manifest(manifest_file, updates)
                except OSError as e:
                    log.warning("could not write image check manifest %s (%s); images will be "
                                "checked again next run", manifest_file, e)
        copies = sum(1 for e in updates.values() if e.get("normalised"))
        log.info("checked %d images (%d cached): %d normalised copies in %s, %d problems",
                 len(todo), len(paths) - len(todo), copies, cache / "images", len(problems))
    for msg in list(problems.values())[:_MAX_LOGGED]:
        log.warning("%s", msg)
    if len(problems) > _MAX_LOGGED:
        log.warning("... and %d more image problems", len(problems) - _MAX_LOGGED)
    # Completion order of the thread pool is arbitrary; callers get input order.
    order = list(dict.fromkeys(paths))
    return ({p: ok[p] for p in order if p in ok},
            {p: problems[p] for p in order if p in problems})


def _record(path: str, entry: dict, ok: dict, problems: dict) -> None:
    if entry.get("problem"):
        problems[path] = entry["problem"]
    else:
        ok[path] = entry["decode"]


def problem_reason(message: str) -> str:
    """The reason part of a `check_images` problem message."""
    return message.partition(": ")[0]
