"""Image decoding and one-time validation of dataset images.

`load_image` turns any file Pillow can read into HxWx3 uint8 RGB with fixed,
documented rules. `check_images` (kpose.data.image_check) runs once before training: it decodes every
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

import io
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from kpose.data.shard_refs import parse_ref, read_ref

_EXIF_ORIENTATION = 0x0112
# Orientations 5..8 swap width and height (90/270 degree rotations).
TRANSPOSING = {5, 6, 7, 8}

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


def open_fully(path: str | os.PathLike) -> Image.Image:
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


def exif_orientation(img: Image.Image) -> int:
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
    img = open_fully(path_or_array)
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


def load_image_from(img: Image.Image, apply_exif: bool) -> np.ndarray:
    """The RGB array of an already decoded Pillow image, by this module's rules."""
    try:
        if apply_exif and exif_orientation(img) != 1:
            img = ImageOps.exif_transpose(img)
        return _to_rgb(img)
    except (OSError, ValueError) as e:
        raise ImageError(f"{getattr(img, 'filename', None) or '<image>'}: cannot convert {img.mode} image to RGB "
                         f"({e}). Fix: re-export it as an 8-bit RGB JPEG or PNG.") from None
