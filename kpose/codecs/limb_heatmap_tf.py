"""TensorFlow port of the limb heatmap encoder for tf.data (kpose.codecs.limb_heatmap is the reference)."""
from __future__ import annotations

from kpose._tf import tf
from kpose.codecs.paf_tf import limb_grid, limb_segments

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
    limbs, stride, grid = limb_grid(input_size, heatmap_size, limbs)
    num_limbs = len(limbs)
    scale = -0.5 / float(limb_sigma) ** 2

    def add_person(maps, person):
        start, unit, length, drawn = limb_segments(person, limbs, stride)
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
