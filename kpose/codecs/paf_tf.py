"""TensorFlow port of the PAF encoder for tf.data (kpose.codecs.paf is the reference)."""
from __future__ import annotations

import numpy as np

from kpose._tf import tf

__all__ = ["encode_pafs_tf"]


def limb_grid(input_size, heatmap_size, limbs) -> tuple[np.ndarray, tf.Tensor, tf.Tensor]:
    """What the limb encoders (PAFs, limb heatmaps) share: (limbs [L, 2] int32, input pixels
    per heatmap pixel [2] (x, y), heatmap pixel centres [h, w, 1, 2])."""
    h, w = heatmap_size
    limbs = np.asarray(limbs, np.int32).reshape(-1, 2)
    stride = tf.constant([input_size[1] / w, input_size[0] / h], tf.float32)
    xs, ys = tf.meshgrid(tf.range(w, dtype=tf.float32), tf.range(h, dtype=tf.float32))
    return limbs, stride, tf.stack([xs, ys], -1)[:, :, None]


def limb_segments(person: tf.Tensor, limbs: np.ndarray, stride: tf.Tensor):
    """One person's limbs [K, 3] -> (start [L, 2] in heatmap pixels, unit direction [L, 2],
    length [L], drawn [L]: both ends labelled and apart; a point has no direction)."""
    uv = (person[:, :2] + 0.5) / stride - 0.5
    start, end = tf.gather(uv, limbs[:, 0]), tf.gather(uv, limbs[:, 1])
    labelled = (tf.gather(person[:, 2], limbs[:, 0]) > 0) & (tf.gather(person[:, 2], limbs[:, 1]) > 0)
    delta = end - start
    length = tf.norm(delta, axis=-1)
    drawn = labelled & (length > 1e-6)
    unit = tf.where(drawn[:, None], delta / tf.where(drawn, length, 1.0)[:, None], 0.0)
    return start, unit, length, drawn


def encode_pafs_tf(keypoints, input_size, heatmap_size, limbs, limb_width=1.0) -> tuple[tf.Tensor, tf.Tensor]:
    """keypoints [P, K, 3] (x, y, v) in input pixels -> (pafs [h, w, 2L], weights ones [L]).

    Same rule as PafCodec.encode: unit vectors within ``limb_width`` heatmap
    pixels of each labelled segment, averaged over overlapping people. P may be
    dynamic (including 0); padded people with v == 0 contribute nothing.
    People are folded in one at a time (sums and counts), so memory is
    [h, w, L, 2] whatever P is, as in the NumPy reference.
    """
    keypoints = tf.convert_to_tensor(keypoints, tf.float32)
    h, w = heatmap_size
    limbs, stride, grid = limb_grid(input_size, heatmap_size, limbs)
    num_limbs = len(limbs)

    def add_person(acc, person):
        total, count = acc
        start, unit, length, drawn = limb_segments(person, limbs, stride)
        rel = grid - start                                              # [h, w, L, 2]
        along = tf.clip_by_value(tf.reduce_sum(rel * unit, -1), 0.0, length)
        dist = tf.norm(rel - along[..., None] * unit, axis=-1)
        on = tf.cast(drawn & (dist <= limb_width), tf.float32)[..., None]   # [h, w, L, 1]
        return total + on * unit, count + on

    init = (tf.zeros([h, w, num_limbs, 2]), tf.zeros([h, w, num_limbs, 1]))
    # One iteration at a time: run ahead, loop iterations would hold their [h, w, L, 2] maps at once.
    total, count = tf.foldl(add_person, keypoints, initializer=init, parallel_iterations=1)
    pafs = total / tf.maximum(count, 1.0)
    return tf.reshape(pafs, [h, w, 2 * num_limbs]), tf.ones([num_limbs], tf.float32)
