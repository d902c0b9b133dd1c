"""Image decoding and one-time validation of dataset images.

`load_image` turns any file Pillow can read into HxWx3 uint8 RGB with fixed,
documented rules. `check_images` runs once before training: it decodes every
image fully, rejects broken ones, and for every file that TensorFlow's
`tf.io.decode_image(channels=3)` would not decode into the same pixels (CMYK,
16-bit, alpha, palette, EXIF-rotated, BMP/WebP/TIFF/GIF...) writes a
normalised RGB copy into a cache directory, so the tf.data hot path only ever
sees plain 8-bit RGB/grayscale JPEG and PNG.

Conversion rules (the same in `load_image` and in the normalised copies):

* grayscale (L, 1) -> replicated to 3 channels.
* 16-bit (I;16*, 16-bit PNG) -> the high byte, which is what libpng's
  strip_16, Pillow's 48-bit RGB PNG reader and tf.image's PNG decoder keep.
  32-bit int (I) -> as-is if <= 255, high byte if <= 65535, else scaled by its
  maximum. Float (F) -> x255 if within [0, 1], else clipped to [0, 255].
* alpha (RGBA, LA, PA, palette with transparency) -> composited over black,
  i.e. rgb * alpha / 255. Opaque pixels are unchanged; the colours hidden under
  fully transparent pixels (often garbage left by editors) cannot leak into
  training, and the result does not depend on the encoder.
* palette -> its RGB colours. CMYK -> Pillow's CMYK->RGB conversion (no ICC
  colour management; Adobe's inverted CMYK JPEGs are handled by Pillow).
* EXIF orientation -> applied when `apply_exif` is true (see `check_images`
  for the rule used with annotated datasets).
* multi-frame files (GIF, TIFF, APNG) -> the first frame.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from kpose.data.shard_refs import parse_ref, read_ref

log = logging.getLogger(__name__)

# Bump when the validation or conversion rules change: old manifest entries and
# normalised copies then stop matching and are redone.
_CHECK_VERSION = 1
_EXIF_ORIENTATION = 0x0112
# Orientations 5..8 swap width and height (90/270 degree rotations).
_TRANSPOSING = {5, 6, 7, 8}
# Enough to see the pattern without flooding a log with a broken folder.
_MAX_LOGGED = 20

# Reasons used in `check_images` problems ("reason: detail") and, by the
# readers, as skip reasons for the instances on those images.
MISSING = "image missing"
UNREADABLE = "image unreadable"
SIZE_MISMATCH = "image size mismatch"


class DataError(ValueError):
    """A dataset file is structurally unusable; the message names the file, the field and the fix."""


class ImageError(DataError):
    """An image file cannot be decoded (missing, unknown format, truncated, corrupt)."""


def default_cache_dir() -> Path:
    """$KPOSE_CACHE, else $XDG_CACHE_HOME/kpose, else ~/.cache/kpose."""
    env = os.environ.get("KPOSE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kpose"


# LOAD_TRUNCATED_IMAGES is a process-wide Pillow switch that other code may have
# turned on; a truncated image would then decode as grey padding and train on
# silently. It is forced off while any of our loads runs (counted, so parallel
# loads in check_images do not restore it under each other) and restored after.
_trunc_lock = threading.Lock()
_trunc_users = 0
_trunc_saved = False


@contextmanager
def _no_truncated_images():
    global _trunc_users, _trunc_saved
    with _trunc_lock:
        if _trunc_users == 0:
            _trunc_saved = ImageFile.LOAD_TRUNCATED_IMAGES
        _trunc_users += 1
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        with _trunc_lock:
            _trunc_users -= 1
            if _trunc_users == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _trunc_saved


def _open_shard_image(ref: str) -> Image.Image:
    """An image stored in a TFRecord shard (a kpose.data.shard_refs reference), not yet decoded."""
    try:
        return Image.open(io.BytesIO(read_ref(ref)))
    except OSError as e:
        raise ImageError(str(e)) from None


def _open_fully(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image (a file, or one inside a TFRecord shard), or raise
    ImageError naming it."""
    path = os.fspath(path)
    in_shard = parse_ref(path) is not None
    if not in_shard and not os.path.isfile(path):
        raise ImageError(f"{path}: image file not found. Fix: check the image directory "
                         f"and the file name in the annotations.")
    with _no_truncated_images():
        try:
            img = _open_shard_image(path) if in_shard else Image.open(path)
            img.load()
        except Image.DecompressionBombError as e:
            raise ImageError(f"{path}: image too large for Pillow's safety limit ({e}). Fix: resize the "
                             f"image, or raise PIL.Image.MAX_IMAGE_PIXELS if it is trusted.") from None
        except Image.UnidentifiedImageError:
            raise ImageError(f"{path}: not an image format Pillow can read (corrupt or not an image). "
                             f"Fix: re-export it as JPEG or PNG, or remove it from the dataset.") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"{path}: cannot decode image ({e}); the file is truncated or corrupt. "
                             f"Fix: re-download or re-export it, or remove it from the dataset.") from None
    return img


def _orientation(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF blocks must not make an image unusable
        return 1
    return value if 1 <= value <= 8 else 1


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Apply the module's conversion rules to a decoded (and oriented) image."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if mode in ("L", "1"):
        return _gray_to_rgb(np.asarray(img.convert("L"), dtype=np.uint8))
    if mode.startswith("I;16") or mode == "I" or mode == "F":
        return _gray_to_rgb(_wide_to_uint8(np.asarray(img), mode))
    if mode == "P" and "transparency" not in img.info:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    if mode in ("P", "PA", "RGBA", "RGBa", "LA", "La"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint16)
        rgb = (rgba[..., :3] * rgba[..., 3:4] + 127) // 255
        return rgb.astype(np.uint8)
    # CMYK, YCbCr, LAB, HSV and the rest: Pillow knows the conversion.
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _gray_to_rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=-1)


def _wide_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    if mode == "F":
        a = a.astype(np.float64)
        a = a * 255.0 if np.nanmax(a, initial=0.0) <= 1.0 else a
        return np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)
    a = a.astype(np.int64)
    if mode.startswith("I;16"):
        return (np.clip(a, 0, 65535) >> 8).astype(np.uint8)
    top = int(a.max(initial=0))
    if top <= 255:
        return np.clip(a, 0, 255).astype(np.uint8)
    if top <= 65535:
        return (np.clip(a, 0, 65535) >> 8).astype(np.uint8)
    return (np.clip(a, 0, None) * 255 // top).astype(np.uint8)


def _array_to_rgb(a: np.ndarray) -> np.ndarray:
    """Arrays follow the file rules: gray replicated, alpha over black, 16-bit high byte."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (2, 3, 4)):
        raise ImageError(f"image array of shape {a.shape}: expected HxW, HxWx1, HxWx3 or HxWx4")
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype.kind == "f":
        a = a.astype(np.float64)
        a = a * 255.0 if np.nanmax(a, initial=0.0) <= 1.0 else a
        a = np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        return _gray_to_rgb(a)
    if a.shape[-1] == 2:  # gray + alpha
        a = np.concatenate([_gray_to_rgb(a[..., 0]), a[..., 1:2]], axis=-1)
    if a.shape[-1] == 4:
        w = a.astype(np.uint16)
        return ((w[..., :3] * w[..., 3:4] + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def load_image(path_or_array, apply_exif: bool = True) -> np.ndarray:
    """Decode an image file (or normalise an array) to HxWx3 uint8 RGB.

    Raises ImageError naming the file when it is missing, not an image, truncated
    or corrupt. See the module docstring for the mode and alpha rules.
    """
    if isinstance(path_or_array, np.ndarray):
        return _array_to_rgb(path_or_array)
    img = _open_fully(path_or_array)
    try:
        return load_image_from(img, apply_exif)
    finally:
        img.close()


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the stored pixels, read from the header only."""
    try:
        with (_open_shard_image(os.fspath(path)) if parse_ref(path) else Image.open(path)) as img:
            return img.size
    except FileNotFoundError:
        raise ImageError(f"{os.fspath(path)}: image file not found. Fix: check the image directory.") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{os.fspath(path)}: cannot read image header ({e}). Fix: re-export or remove it.") from None


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
    rotated = (h, w) if orientation in _TRANSPOSING else (w, h)
    if expected is None:
        # Without annotated sizes, trust the tag: it is what viewers (and most
        # annotation tools) showed.
        return orientation != 1, rotated if orientation != 1 else stored
    if tuple(expected) == (w, h):
        # Stored dims match the JSON: annotations were made on stored pixels (as
        # COCO's tools and tf do). For 180-degree/mirror tags the dims cannot tell
        # the two apart and stored orientation wins by this rule too.
        return False, stored
    if orientation in _TRANSPOSING and tuple(expected) == rotated:
        return True, rotated
    return None, stored


def _copy_path(cache_dir: Path, src: str, key: str, ext: str) -> Path:
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return cache_dir / "images" / f"{Path(src).stem}-{digest}{ext}"


def _inspect(path: str, expected: tuple[int, int] | None, key: str, cache_dir: Path) -> dict:
    """Validate one image; write a normalised copy when needed. Returns a manifest entry."""
    entry: dict = {"decode": None, "problem": None}
    try:
        img = _open_fully(path)
    except ImageError as e:
        reason = MISSING if not os.path.isfile(path) else UNREADABLE
        entry["problem"] = f"{reason}: {e}"
        return entry
    try:
        orientation = _orientation(img)
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


def load_image_from(img: Image.Image, apply_exif: bool) -> np.ndarray:
    """The RGB array of an already decoded Pillow image, by this module's rules."""
    try:
        if apply_exif and _orientation(img) != 1:
            img = ImageOps.exif_transpose(img)
        return _to_rgb(img)
    except (OSError, ValueError) as e:
        raise ImageError(f"{getattr(img, 'filename', None) or '<image>'}: cannot convert {img.mode} image to RGB "
                         f"({e}). Fix: re-export it as an 8-bit RGB JPEG or PNG.") from None


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
