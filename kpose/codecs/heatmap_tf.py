"""TensorFlow ports of the heatmap codec (kpose.codecs.heatmap is the reference).

``encode_heatmaps_tf`` is for ``tf.data.Dataset.map`` (graph mode, no
py_function); ``decode_heatmaps_tf`` is an in-graph argmax + DARK decode for
evaluation inside TF (it uses argmax/gather, so it is not meant for TFLite).
"""
from __future__ import annotations

import numpy as np

from kpose._tf import tf
from kpose.codecs.heatmap import LOG_FLOOR, default_dark_radius, savgol_quadratic_2d

__all__ = ["encode_heatmaps_tf", "encode_multi_heatmaps_tf", "decode_heatmaps_tf", "heatmap_to_input_tf"]


def _strides(input_size, heatmap_size) -> tf.Tensor:
    """(sx, sy) as a float32 tensor."""
    return tf.stack([tf.cast(input_size[1], tf.float32) / tf.cast(heatmap_size[1], tf.float32),
                     tf.cast(input_size[0], tf.float32) / tf.cast(heatmap_size[0], tf.float32)])


def heatmap_to_input_tf(uv, input_size, heatmap_size) -> tf.Tensor:
    """Heatmap pixel coordinates [..., 2] (u, v) -> input pixels (x, y): x = (u + 0.5) * stride - 0.5."""
    return (uv + 0.5) * _strides(input_size, heatmap_size) - 0.5


def encode_heatmaps_tf(keypoints, input_size, heatmap_size, sigma=2.0) -> tuple[tf.Tensor, tf.Tensor]:
    """keypoints [..., K, 3] (x, y, v) in input pixels -> (heatmaps [..., h, w, K], weights [..., K]).

    Same rules as HeatmapCodec.encode: unbiased Gaussians of peak 1; weight 0
    and an empty channel when v == 0 or the keypoint is outside the heatmap.
    """
    keypoints = tf.convert_to_tensor(keypoints, tf.float32)
    h, w = heatmap_size
    uv = (keypoints[..., :2] + 0.5) / _strides(input_size, heatmap_size) - 0.5
    u, v = uv[..., 0], uv[..., 1]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    valid = ((keypoints[..., 2] > 0) & (u >= -0.5) & (u <= wf - 0.5) & (v >= -0.5) & (v <= hf - 0.5))
    u, v = tf.where(valid, u, 0.0), tf.where(valid, v, 0.0)
    inv2s2 = 1.0 / (2.0 * tf.square(tf.cast(sigma, tf.float32)))
    xs = tf.range(w, dtype=tf.float32)
    ys = tf.range(h, dtype=tf.float32)
    gx = tf.exp(-tf.square(xs - u[..., None]) * inv2s2) * tf.cast(valid, tf.float32)[..., None]
    gy = tf.exp(-tf.square(ys - v[..., None]) * inv2s2)
    heatmaps = tf.einsum("...ky,...kx->...yxk", gy, gx)
    return heatmaps, tf.cast(valid, tf.float32)


def encode_multi_heatmaps_tf(keypoints, input_size, heatmap_size, sigma=2.0) -> tuple[tf.Tensor, tf.Tensor]:
    """Bottom-up target: people [P, K, 3] -> (max over people [h, w, K], weights ones [K]).

    People are folded in one at a time (a running maximum from zeros, which is
    also the empty map for P = 0), so memory is [h, w, K] whatever P is.
    """
    keypoints = tf.convert_to_tensor(keypoints, tf.float32)
    h, w = heatmap_size
    num_kp = keypoints.shape[-2] if keypoints.shape[-2] is not None else tf.shape(keypoints)[-2]

    def add_person(merged, person):
        return tf.maximum(merged, encode_heatmaps_tf(person, input_size, heatmap_size, sigma)[0])

    merged = tf.foldl(add_person, keypoints, initializer=tf.zeros(tf.stack([h, w, num_kp])),
                      parallel_iterations=1)   # iterations run ahead would each hold a map
    return merged, tf.ones([num_kp], tf.float32)


def decode_heatmaps_tf(heatmaps, input_size, sigma=2.0, dark_radius=None, refine: bool = True) -> tf.Tensor:
    """heatmaps [..., h, w, K] (static h, w and rank) -> keypoints [..., K, 3] (x, y, score).

    Argmax, then DARK exactly as kpose.codecs.heatmap.dark_refine: a quadratic
    least-squares fit of the log-heatmap over a window shifted inside the map.
    """
    heatmaps = tf.convert_to_tensor(heatmaps, tf.float32)
    rank = heatmaps.shape.rank
    h, w = int(heatmaps.shape[-3]), int(heatmaps.shape[-2])
    lead = tf.shape(heatmaps)[:-3]
    k = tf.shape(heatmaps)[-1]
    perm = list(range(rank - 3)) + [rank - 1, rank - 3, rank - 2]
    flat = tf.reshape(tf.transpose(heatmaps, perm), [-1, h * w])
    idx = tf.argmax(flat, axis=1, output_type=tf.int32)
    score = tf.gather(flat, idx, axis=1, batch_dims=1)
    iy, ix = idx // w, idx % w
    fx, fy = tf.cast(ix, tf.float32), tf.cast(iy, tf.float32)
    if refine:
        radius = default_dark_radius(sigma) if dark_radius is None else int(dark_radius)
        ry, rx = min(radius, (h - 1) // 2), min(radius, (w - 1) // 2)
        dy, dx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
        cy = tf.clip_by_value(iy, ry, h - 1 - ry)
        cx = tf.clip_by_value(ix, rx, w - 1 - rx)
        win = (cy[:, None] + dy.ravel()[None]) * w + cx[:, None] + dx.ravel()[None]
        window = tf.gather(flat, win, axis=1, batch_dims=1)
        floor = LOG_FLOOR * tf.maximum(score, 1e-30)[:, None]
        coef = tf.matmul(tf.math.log(tf.maximum(window, floor)),
                         tf.constant(savgol_quadratic_2d(ry, rx).T, tf.float32))
        gx, gy = coef[:, 1], coef[:, 2]
        hxx, hxy, hyy = 2.0 * coef[:, 3], coef[:, 4], 2.0 * coef[:, 5]
        det = hxx * hyy - hxy * hxy
        ok = (hxx < 0) & (det > 0)
        safe = tf.where(ok, det, 1.0)
        ox = -(hyy * gx - hxy * gy) / safe
        oy = -(hxx * gy - hxy * gx) / safe
        u = tf.clip_by_value(tf.cast(cx, tf.float32) + ox, fx - 1.0, fx + 1.0)
        v = tf.clip_by_value(tf.cast(cy, tf.float32) + oy, fy - 1.0, fy + 1.0)
        fx, fy = tf.where(ok, u, fx), tf.where(ok, v, fy)
    xy = heatmap_to_input_tf(tf.stack([fx, fy], -1), input_size, (h, w))
    out = tf.concat([xy, score[:, None]], -1)
    return tf.reshape(out, tf.concat([lead, [k, 3]], 0))
