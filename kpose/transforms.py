"""Geometric transforms of the top-down pipeline (NumPy reference).

Coordinate convention (used by every module of kpose)
-----------------------------------------------------
Continuous pixel coordinates with pixel centres at integer positions: pixel
(column i, row j) covers [i-0.5, i+0.5] x [j-0.5, j+0.5]. An image of width W
therefore spans [-0.5, W-0.5]. Keypoints are (x, y) in this frame; COCO
keypoint annotations are integer pixel indices and are used as they are.

COCO boxes. A COCO ``bbox`` (x, y, w, h) is the extent of the segmentation
polygon in the *edge* frame where the image spans [0, W] (pixel i covers
[i, i+1]). In our frame the box therefore covers [x-0.5, x+w-0.5] x
[y-0.5, y+h-0.5]; equivalently, an integer box covers pixel columns
x .. x+w-1. Its centre is (x + w/2 - 0.5, y + h/2 - 0.5).

Crops. A top-down crop of output size (H, W) is described by a centre and a
scale (the crop's width and height in image pixels). The crop maps the
rectangle centre +- scale/2 onto the output's outer pixel edges, i.e. onto
[-0.5, W-0.5] x [-0.5, H-0.5]; so one output pixel spans scale/(W, H) image
pixels and the crop centre lands at ((W-1)/2, (H-1)/2).

Affine matrices are [2, 3] and map image -> crop: p' = M[:, :2] @ p + M[:, 2].
Rotation is in degrees, counter-clockwise as the crop is displayed (y points
down): a positive angle makes the crop's content appear rotated
counter-clockwise. ``flip`` mirrors inside the crop, x' -> W-1-x' in crop
pixels; after a flip the keypoint channels must be permuted with the
skeleton's ``flip_index()`` (left and right swap).

Sizes are always (height, width), points always (x, y).
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "box_to_center_scale", "affine_matrix", "invert_affine", "apply_affine",
    "warp_image", "flip_keypoints", "pixel_scale_matrix", "antialiased_resize", "antialias_prefilter",
]


# Top-down crops grow the person box by this much unless a recipe (augment.box_padding,
# recorded with the model as crop_padding) says otherwise.
DEFAULT_CROP_PADDING = 1.25


def box_to_center_scale(bbox, aspect_ratio: float, padding: float = DEFAULT_CROP_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """COCO boxes (x, y, w, h) [..., 4] -> crop centre [..., 2] and scale [..., 2].

    The box is grown (never shrunk) along one axis to ``aspect_ratio`` (the crop's
    width / height), then both sides are multiplied by ``padding``. The scale is
    the crop's (width, height) in image pixels.
    """
    bbox = np.asarray(bbox, dtype=np.float64)
    x, y, w, h = np.moveaxis(bbox, -1, 0)
    center = np.stack([x + 0.5 * w - 0.5, y + 0.5 * h - 0.5], axis=-1)
    sw = np.maximum(w, h * aspect_ratio)
    sh = np.maximum(h, w / aspect_ratio)
    scale = np.stack([sw, sh], axis=-1) * padding
    return center, scale


def affine_matrix(center, scale, output_size: tuple[int, int], rotation=0.0, flip=False) -> np.ndarray:
    """Image -> crop matrices [..., 2, 3]; arguments broadcast over leading dims.

    center, scale: [..., 2] in image pixels (x, y) and (width, height).
    output_size: (H, W) of the crop.
    rotation: [...] degrees, counter-clockwise as displayed.
    flip: [...] bool, mirror horizontally inside the crop.
    """
    out_h, out_w = output_size
    center = np.asarray(center, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    theta = np.deg2rad(np.asarray(rotation, dtype=np.float64))
    flip = np.asarray(flip, dtype=bool)
    shape = np.broadcast_shapes(center.shape[:-1], scale.shape[:-1], theta.shape, flip.shape)
    center = np.broadcast_to(center, shape + (2,))
    scale = np.broadcast_to(scale, shape + (2,))
    cx, cy = center[..., 0], center[..., 1]
    kx, ky = out_w / scale[..., 0], out_h / scale[..., 1]
    cos, sin = np.broadcast_to(np.cos(theta), shape), np.broadcast_to(np.sin(theta), shape)
    # y points down, so a counter-clockwise screen rotation is [[c, s], [-s, c]].
    a00, a01 = kx * cos, kx * sin
    a10, a11 = -ky * sin, ky * cos
    sign = np.where(np.broadcast_to(flip, shape), -1.0, 1.0)
    a00, a01 = sign * a00, sign * a01
    # The centre must land on the crop's middle, (W-1)/2, (H-1)/2, flipped or not.
    tx = 0.5 * (out_w - 1) - (a00 * cx + a01 * cy)
    ty = 0.5 * (out_h - 1) - (a10 * cx + a11 * cy)
    return np.stack([np.stack([a00, a01, tx], -1), np.stack([a10, a11, ty], -1)], -2)


def invert_affine(M) -> np.ndarray:
    """Inverse of [..., 2, 3] affine matrices (crop -> image for a crop matrix)."""
    M = np.asarray(M, dtype=np.float64)
    a, b, c = M[..., 0, 0], M[..., 0, 1], M[..., 0, 2]
    d, e, f = M[..., 1, 0], M[..., 1, 1], M[..., 1, 2]
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    return np.stack([
        np.stack([ia, ib, -(ia * c + ib * f)], -1),
        np.stack([id_, ie, -(id_ * c + ie * f)], -1),
    ], -2)


def apply_affine(points, M) -> np.ndarray:
    """Map points [..., 2] with M [2, 3], or points [..., N, 2] with M [..., 2, 3].

    Extra trailing columns of ``points`` (e.g. visibility) are passed through.
    """
    points = np.asarray(points)
    M = np.asarray(M, dtype=np.float64)
    xy = points[..., :2].astype(np.float64)
    if M.ndim == 2:
        out = xy @ M[:, :2].T + M[:, 2]
    else:
        out = np.einsum("...ij,...nj->...ni", M[..., :2], xy) + M[..., None, :, 2]
    if points.shape[-1] > 2:
        extra = np.broadcast_to(points[..., 2:], out.shape[:-1] + (points.shape[-1] - 2,))
        out = np.concatenate([out, extra], -1)
    return out


def _sample_bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray, fill: float) -> np.ndarray:
    """Bilinear samples at (x, y) [N]; neighbours outside the image read as ``fill``."""
    h, w = image.shape[:2]
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)

    def read(xi, yi):
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        vals = image[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)].astype(np.float64)
        return np.where(ok[:, None], vals, fill)

    top = (1 - fx) * read(x0, y0) + fx * read(x0 + 1, y0)
    bottom = (1 - fx) * read(x0, y0 + 1) + fx * read(x0 + 1, y0 + 1)
    return (1 - fy) * top + fy * bottom


def warp_image(image, M, output_size: tuple[int, int], fill: float = 0.0,
               interpolation: str = "bilinear") -> np.ndarray:
    """Reference warp of an [H, W, C] (or [H, W]) image into an (H', W') crop.

    Each output pixel centre is mapped back through M^-1 and sampled
    (bilinear, neighbours outside the image read as ``fill``; this is exactly
    what ``ImageProjectiveTransformV3`` with fill_mode CONSTANT does). Integer
    images are rounded and clipped back to their dtype.
    """
    image = np.asarray(image)
    squeeze = image.ndim == 2
    if squeeze:
        image = image[..., None]
    out_h, out_w = output_size
    inv = invert_affine(M)
    if interpolation == "bilinear" and inv[0, 1] == 0 and inv[1, 0] == 0:
        # Scale and shift only (whole-image fits, unrotated crops): the same samples, the same
        # arithmetic in the same order, one axis at a time -- several times faster.
        out = _sample_separable(image, inv[0, 0] * np.arange(out_w) + inv[0, 2],
                                inv[1, 1] * np.arange(out_h) + inv[1, 2], fill)
        return _cast_like(out, image, squeeze)
    yy, xx = np.mgrid[0:out_h, 0:out_w]
    src = apply_affine(np.stack([xx.ravel(), yy.ravel()], -1), inv)
    if interpolation == "bilinear":
        vals = _sample_bilinear(image, src[:, 0], src[:, 1], fill)
    elif interpolation == "nearest":
        # Round half away from zero, as TF's nearest interpolation (std::round) does.
        xi = (np.sign(src[:, 0]) * np.floor(np.abs(src[:, 0]) + 0.5)).astype(np.int64)
        yi = (np.sign(src[:, 1]) * np.floor(np.abs(src[:, 1]) + 0.5)).astype(np.int64)
        ok = (xi >= 0) & (xi < image.shape[1]) & (yi >= 0) & (yi < image.shape[0])
        vals = np.where(ok[:, None], image[np.clip(yi, 0, image.shape[0] - 1),
                                           np.clip(xi, 0, image.shape[1] - 1)], fill)
    else:
        raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
    return _cast_like(vals.reshape(out_h, out_w, image.shape[-1]), image, squeeze)


def _cast_like(out: np.ndarray, image: np.ndarray, squeeze: bool) -> np.ndarray:
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        out = np.clip(np.rint(out), info.min, info.max).astype(image.dtype)
    else:
        out = out.astype(np.result_type(image.dtype, np.float32))
    return out[..., 0] if squeeze else out


def _sample_separable(image: np.ndarray, x: np.ndarray, y: np.ndarray, fill: float) -> np.ndarray:
    """`_sample_bilinear` on the grid x [W'] by y [H']: every output row blends the same
    columns, so columns are blended once per input row used, then rows per output row."""
    h, w = image.shape[:2]
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[None, :, None], (y - y0)[:, None, None]
    # Indices shifted by one into a frame with a border of `fill`: neighbours outside the
    # image land on the border.
    xi = np.clip(x0.astype(np.int64) + 1, 0, w + 1), np.clip(x0.astype(np.int64) + 2, 0, w + 1)
    yi = np.clip(y0.astype(np.int64) + 1, 0, h + 1), np.clip(y0.astype(np.int64) + 2, 0, h + 1)
    used = np.unique(np.concatenate(yi))
    inside = (used >= 1) & (used <= h)
    rows = np.where(inside[:, None, None], image[np.clip(used - 1, 0, h - 1)].astype(np.float64), fill)
    rows = np.pad(rows, ((0, 0), (1, 1), (0, 0)), constant_values=fill)
    cols = (1 - fx) * rows[:, xi[0]] + fx * rows[:, xi[1]]
    top = cols[np.searchsorted(used, yi[0])]
    bottom = cols[np.searchsorted(used, yi[1])]
    return (1 - fy) * top + fy * bottom


def pixel_scale_matrix(kx: float, ky: float) -> np.ndarray:
    """[3, 3] homogeneous map of a resampling by (kx, ky) under the pixel-centre convention:
    x' = (x + 0.5) * kx - 0.5 (e.g. input pixel -> heatmap pixel with k = 1 / stride)."""
    return np.array([[kx, 0.0, 0.5 * kx - 0.5], [0.0, ky, 0.5 * ky - 0.5], [0.0, 0.0, 1.0]])


def _triangle_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] resampling weights of a triangle filter as wide as the output pixel
    (bilinear when enlarging, an area-like average when shrinking), rows summing to 1."""
    scale = n_in / n_out
    centre = (np.arange(n_out) + 0.5) * scale - 0.5
    w = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in)[None, :] - centre[:, None]) / max(scale, 1.0))
    return w / w.sum(1, keepdims=True)


def antialiased_resize(image, size: tuple[int, int]) -> np.ndarray:
    """Resize an [H, W(, C)] image to (h, w) with a triangle filter scaled to the output
    pixel (what ``tf.image.resize(..., "bilinear", antialias=True)`` and Pillow's bilinear
    reduction do): every input pixel contributes, so shrinking does not alias."""
    image = np.asarray(image)
    h, w = (int(v) for v in size)
    out = np.einsum("yi,ix...->yx...", _triangle_weights(image.shape[0], h), image.astype(np.float64))
    out = np.einsum("xj,yj...->yx...", _triangle_weights(image.shape[1], w), out)
    return _cast_like(out, image, False)


def antialias_prefilter(image, M) -> tuple[np.ndarray, np.ndarray]:
    """(image, M) for a warp that may shrink: when M maps more than one image pixel onto an
    output pixel along an image axis, the image is first resized to the warp's scale with
    ``antialiased_resize`` and M composed with that resize, so that the bilinear warp that
    follows no longer shrinks. Otherwise both come back unchanged."""
    image = np.asarray(image)
    M = np.asarray(M, np.float64)
    kx, ky = np.hypot(M[0, 0], M[1, 0]), np.hypot(M[0, 1], M[1, 1])  # output px per image px
    if kx >= 1.0 and ky >= 1.0:
        return image, M
    h, w = image.shape[:2]
    nh, nw = max(1, int(round(h * min(ky, 1.0)))), max(1, int(round(w * min(kx, 1.0))))
    return antialiased_resize(image, (nh, nw)), M @ pixel_scale_matrix(w / nw, h / nh)


def flip_keypoints(keypoints, flip_index, width: int) -> np.ndarray:
    """Mirror crop-space keypoints [..., K, 3+] horizontally: x -> width-1-x, and swap
    left/right channels with ``flip_index`` (``Skeleton.flip_index()``)."""
    keypoints = np.asarray(keypoints)
    out = keypoints[..., np.asarray(flip_index), :].copy()
    out[..., 0] = (width - 1) - out[..., 0]
    return out


def fit_matrix(image_size: tuple[int, int], input_size: tuple[int, int]) -> np.ndarray:
    """[2, 3] image -> model-input affine for a whole image: scaled to fit inside the input
    keeping its aspect ratio, centred (the rest is zero padding), as the bottom-up training
    pipeline, the web demo and the Android decoder do."""
    (h, w), (ih, iw) = image_size, input_size
    center, scale = box_to_center_scale(np.array([0.0, 0.0, w, h]), iw / ih, 1.0)
    return affine_matrix(center, scale, (ih, iw))
