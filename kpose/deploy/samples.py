"""Model inputs for calibration (int8) and parity checks, from any data source: person
crops for top-down models, whole images fitted to the input for bottom-up models."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kpose.data.images import load_image
from kpose.data.pipeline import eval_dataset
from kpose.data.sources import load_instances
from kpose.models import BOTTOM_UP
from kpose.transforms import DEFAULT_CROP_PADDING, affine_matrix, box_to_center_scale, fit_matrix, warp_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def model_inputs(model, source, n: int = 32, split: str = "val", seed: int = 0) -> np.ndarray:
    """Up to `n` inputs [N, H, W, 3] float32 (0..255) for `model`, as its `predict` makes
    them: person crops (top-down, `crops_from` with the model's crop padding) or whole
    images fitted to the input (bottom-up, `images_from`)."""
    if model.task == BOTTOM_UP:
        return images_from(source, model.input_size, n, split, seed)
    return crops_from(source, model.input_size, n, split, seed, padding=model.crop_padding)


def images_from(source, input_size: tuple[int, int], n: int = 32, split: str = "val",
                seed: int = 0) -> np.ndarray:
    """Up to `n` whole images fitted to the input [N, H, W, 3] float32 (0..255), the way a
    bottom-up `PoseModel.predict` feeds them (kpose.transforms.fit_matrix: scaled to fit,
    aspect kept, centred, the rest filled with 0).

    source: an image file, a folder of images or a list of image paths (the first `n`,
    in order), a data spec (a random but seeded subset of the split's images that have
    people), or an array of model inputs (returned as is).
    """
    if isinstance(source, np.ndarray):
        return np.asarray(source, np.float32)
    paths = _image_paths(source)
    if paths is None:
        inst = load_instances(source, split, progress=False)
        found = sorted(set(str(p) for p in inst.image_paths))
        if not found:
            raise ValueError(f"{source!r} ({split}) has no images with people to fit")
        rng = np.random.default_rng(seed)
        paths = [Path(found[i]) for i in np.sort(rng.choice(len(found), size=min(n, len(found)), replace=False))]
    out = []
    for path in paths[:n]:
        img = load_image(path)
        out.append(warp_image(img, fit_matrix(img.shape[:2], input_size), tuple(input_size)))
    if not out:
        raise ValueError(f"{source!r}: no images to fit (image suffixes: {', '.join(IMAGE_SUFFIXES)})")
    return np.stack(out).astype(np.float32)


def crops_from(source, input_size: tuple[int, int], n: int = 32, split: str = "val",
               seed: int = 0, padding: float = DEFAULT_CROP_PADDING) -> np.ndarray:
    """Up to `n` model-input crops [N, H, W, 3] float32 (0..255).

    source: a data spec ("synthetic", "coco:ANN:IMAGES", "mpii:LIST:IMAGES", dict) whose
    person boxes give top-down crops (box grown by `padding`: pass the model's crop_padding;
    a random but seeded subset), an image
    file, a folder of images or a list of image paths (each whole image is one crop, as
    `PoseModel.predict` does without boxes), or an array of crops (returned as is).
    """
    if isinstance(source, np.ndarray):
        return np.asarray(source, np.float32)
    paths = _image_paths(source)
    if paths is not None:
        return _whole_image_crops(paths[:n], input_size)
    inst = load_instances(source, split, progress=False)
    if len(inst) == 0:
        raise ValueError(f"{source!r} ({split}) has no person instances to crop")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(inst), size=min(n, len(inst)), replace=False))
    crops = [c.numpy() for c, _, _ in eval_dataset(inst.select(pick), input_size, 16, padding)]
    return np.concatenate(crops).astype(np.float32)


def _image_paths(source) -> list[Path] | None:
    if isinstance(source, (list, tuple)):
        return [Path(p) for p in source]
    if not isinstance(source, (str, Path)):
        return None
    p = Path(source)
    if p.is_dir():
        return sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
        return [p]
    return None


def _whole_image_crops(paths, input_size) -> np.ndarray:
    ih, iw = input_size
    out = []
    for path in paths:
        img = load_image(path)
        h, w = img.shape[:2]
        center, scale = box_to_center_scale(np.array([0, 0, w, h], np.float64), iw / ih, 1.0)
        out.append(warp_image(img, affine_matrix(center, scale, (ih, iw)), (ih, iw)))
    if not out:
        raise ValueError("no images to crop")
    return np.stack(out).astype(np.float32)
