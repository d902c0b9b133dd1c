"""TensorFlow port of the limb heatmap encoder for tf.data (kpose.codecs.limb_heatmap is the reference)."""
from __future__ import annotations

import numpy as np

from kpose._tf import tf

__all__ = ["encode_limb_heatmaps_tf"]


def encode_limb_heatmaps_tf(keypoints, input_size, heatmap_size, limbs,
                            limb_sigma=1.0, round_ends=True) -> tuple[tf.Tensor, tf.Tensor]:
    """keypoints [P, K, 3] (x, y, v) in input pixels -> (limb maps [h, w, L], weights ones [L]).

    Same rule as LimbHeatmapCodec.encode: exp(-d^2 / 2 limb_sigma^2) of the
    distance to each labelled segment (round_ends) or, where the projection falls
    within it, to its line; max over people. P may be dynamic (including 0); padded people with v == 0
    contribute nothing. People are folded in one at a time (a running maximum),
    so memory is [h, w, L, 2] whatever P is, as in the NumPy reference.
    """
    keypoints = tf.convert_to_tensor(keypoints, tf.float32)
    h, w = heatmap_size
    limbs = np.asarray(limbs, np.int32).reshape(-1, 2)
    num_limbs = len(limbs)
    stride = tf.constant([input_size[1] / w, input_size[0] / h], tf.float32)
    xs, ys = tf.meshgrid(tf.range(w, dtype=tf.float32), tf.range(h, dtype=tf.float32))
    grid = tf.stack([xs, ys], -1)[:, :, None]                          # [h, w, 1, 2]
    scale = -0.5 / float(limb_sigma) ** 2

    def add_person(maps, person):
        uv = (person[:, :2] + 0.5) / stride - 0.5
        start, end = tf.gather(uv, limbs[:, 0]), tf.gather(uv, limbs[:, 1])   # [L, 2]
        labelled = (tf.gather(person[:, 2], limbs[:, 0]) > 0) & (tf.gather(person[:, 2], limbs[:, 1]) > 0)
        delta = end - start
        length = tf.norm(delta, axis=-1)
        drawn = labelled & (length > 1e-6)
        unit = tf.where(drawn[:, None], delta / tf.where(drawn, length, 1.0)[:, None], 0.0)
        rel = grid - start                                              # [h, w, L, 2]
        along = tf.reduce_sum(rel * unit, -1)                           # [h, w, L]
        if round_ends:
            along, inside = tf.clip_by_value(along, 0.0, length), tf.broadcast_to(drawn, tf.shape(along))
        else:
            inside = drawn & (along >= 0.0) & (along <= length)
        across = rel - along[..., None] * unit
        d2 = tf.reduce_sum(across * across, -1)
        return tf.maximum(maps, tf.where(inside, tf.exp(d2 * scale), 0.0))

    # One iteration at a time: run ahead, loop iterations would hold their [h, w, L, 2] maps at once.
    maps = tf.foldl(add_person, keypoints, initializer=tf.zeros([h, w, num_limbs]), parallel_iterations=1)
    return maps, tf.ones([num_limbs], tf.float32)
