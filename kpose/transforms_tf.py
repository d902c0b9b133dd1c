"""TensorFlow ports of kpose.transforms for the tf.data hot path.

Same convention and argument meanings as the NumPy reference (see
kpose.transforms); everything here is plain graph-mode TF (no py_function), so
per-sample random augmentation can be drawn and applied inside
``tf.data.Dataset.map``. Matrices are float32 [..., 2, 3], image -> crop.
"""
from __future__ import annotations

import math

from kpose._tf import tf

__all__ = [
    "box_to_center_scale_tf", "affine_matrix_tf", "invert_affine_tf", "apply_affine_tf",
    "warp_image_tf", "flip_keypoints_tf",
]


def box_to_center_scale_tf(bbox, aspect_ratio: float, padding=1.25) -> tuple[tf.Tensor, tf.Tensor]:
    """COCO boxes [..., 4] (x, y, w, h) -> (center [..., 2], scale [..., 2])."""
    bbox = tf.convert_to_tensor(bbox, tf.float32)
    x, y, w, h = tf.unstack(bbox, 4, axis=-1)
    center = tf.stack([x + 0.5 * w - 0.5, y + 0.5 * h - 0.5], -1)
    sw = tf.maximum(w, h * aspect_ratio)
    sh = tf.maximum(h, w / aspect_ratio)
    scale = tf.stack([sw, sh], -1) * tf.cast(padding, tf.float32)
    return center, scale


def affine_matrix_tf(center, scale, output_size, rotation=0.0, flip=False) -> tf.Tensor:
    """Image -> crop matrices [..., 2, 3]; all arguments may be tensors and broadcast.

    center, scale: [..., 2]; output_size: (H, W); rotation: [...] degrees
    counter-clockwise as displayed; flip: [...] bool, mirror inside the crop.
    """
    center = tf.convert_to_tensor(center, tf.float32)
    scale = tf.convert_to_tensor(scale, tf.float32)
    theta = tf.convert_to_tensor(rotation, tf.float32) * (math.pi / 180.0)
    flip = tf.convert_to_tensor(flip, tf.bool)
    out_h = tf.cast(output_size[0], tf.float32)
    out_w = tf.cast(output_size[1], tf.float32)
    cx, cy = center[..., 0], center[..., 1]
    kx, ky = out_w / scale[..., 0], out_h / scale[..., 1]
    cos, sin = tf.cos(theta), tf.sin(theta)
    sign = tf.where(flip, -1.0, 1.0)
    # y points down, so a counter-clockwise screen rotation is [[c, s], [-s, c]].
    a00, a01 = sign * kx * cos, sign * kx * sin
    a10, a11 = -ky * sin, ky * cos
    tx = 0.5 * (out_w - 1.0) - (a00 * cx + a01 * cy)
    ty = 0.5 * (out_h - 1.0) - (a10 * cx + a11 * cy)
    # Broadcast every entry to the common batch shape before stacking.
    entries = [a00, a01, tx, a10, a11, ty]
    shape = tf.shape(a00)
    for e in entries[1:]:
        shape = tf.broadcast_dynamic_shape(shape, tf.shape(e))
    a00, a01, tx, a10, a11, ty = [tf.broadcast_to(e, shape) for e in entries]
    return tf.stack([tf.stack([a00, a01, tx], -1), tf.stack([a10, a11, ty], -1)], -2)


def invert_affine_tf(M) -> tf.Tensor:
    """Inverse of [..., 2, 3] affine matrices."""
    M = tf.convert_to_tensor(M, tf.float32)
    a, b, c = M[..., 0, 0], M[..., 0, 1], M[..., 0, 2]
    d, e, f = M[..., 1, 0], M[..., 1, 1], M[..., 1, 2]
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    return tf.stack([
        tf.stack([ia, ib, -(ia * c + ib * f)], -1),
        tf.stack([id_, ie, -(id_ * c + ie * f)], -1),
    ], -2)


def apply_affine_tf(points, M) -> tf.Tensor:
    """Map points [..., N, 2+] with M [..., 2, 3] (leading dims broadcast, or M [2, 3]).

    Extra trailing columns of ``points`` (e.g. visibility) are passed through.
    """
    points = tf.convert_to_tensor(points, tf.float32)
    M = tf.convert_to_tensor(M, tf.float32)
    xy = points[..., :2]
    # Written elementwise so any broadcast of leading dims works without matmul rules.
    M = M[..., None, :, :]
    x = M[..., 0, 0] * xy[..., 0] + M[..., 0, 1] * xy[..., 1] + M[..., 0, 2]
    y = M[..., 1, 0] * xy[..., 0] + M[..., 1, 1] * xy[..., 1] + M[..., 1, 2]
    out = tf.stack([x, y], -1)
    extra = points[..., 2:]
    extra = tf.broadcast_to(extra, tf.concat([tf.shape(out)[:-1], tf.shape(extra)[-1:]], 0))
    return tf.concat([out, extra], -1)


def warp_image_tf(image, M, output_size, fill: float = 0.0, interpolation: str = "bilinear") -> tf.Tensor:
    """Warp an image [H, W, C] with M [2, 3] (or a batch [B, H, W, C] with M [B, 2, 3]).

    ImageProjectiveTransformV3 takes the *output -> input* matrix and samples
    output pixel (i, j) at input position M^-1 (i, j), pixel centres at
    integer positions, out-of-image neighbours read as ``fill``: the same
    convention as kpose.transforms.warp_image, so we pass the inverse.
    Integer images are rounded and clipped back to their dtype.
    """
    image = tf.convert_to_tensor(image)
    dtype = image.dtype
    batched = image.shape.rank == 4
    images = tf.cast(image if batched else image[None], tf.float32)
    inv = invert_affine_tf(M)
    inv = tf.reshape(inv, [-1, 6])
    transforms = tf.concat([inv, tf.zeros([tf.shape(inv)[0], 2], tf.float32)], -1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms,
        output_shape=tf.cast(tf.stack([output_size[0], output_size[1]]), tf.int32),
        fill_value=tf.cast(fill, tf.float32), interpolation=interpolation.upper(),
        fill_mode="CONSTANT")
    if dtype.is_integer:
        out = tf.clip_by_value(tf.round(out), dtype.min, dtype.max)
    out = tf.cast(out, dtype)
    return out if batched else out[0]


def flip_keypoints_tf(keypoints, flip_index, width) -> tf.Tensor:
    """Mirror crop-space keypoints [..., K, 3+]: x -> width-1-x, channels by ``flip_index``."""
    keypoints = tf.convert_to_tensor(keypoints, tf.float32)
    out = tf.gather(keypoints, flip_index, axis=-2)
    x = tf.cast(width, tf.float32) - 1.0 - out[..., :1]
    return tf.concat([x, out[..., 1:]], -1)
