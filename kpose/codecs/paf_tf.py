"""TensorFlow port of the PAF encoder for tf.data (kpose.codecs.paf is the reference)."""
from __future__ import annotations

import numpy as np

from kpose._tf import tf

__all__ = ["encode_pafs_tf"]


def encode_pafs_tf(keypoints, input_size, heatmap_size, limbs, limb_width=1.0) -> tuple[tf.Tensor, tf.Tensor]:
    """keypoints [P, K, 3] (x, y, v) in input pixels -> (pafs [h, w, 2L], weights ones [L]).

    Same rule as PafCodec.encode: unit vectors within ``limb_width`` heatmap
    pixels of each labelled segment, averaged over overlapping people. P may be
    dynamic (including 0); padded people with v == 0 contribute nothing.
    """
    keypoints = tf.convert_to_tensor(keypoints, tf.float32)
    h, w = heatmap_size
    limbs = np.asarray(limbs, np.int32).reshape(-1, 2)
    num_limbs = len(limbs)
    stride = tf.constant([input_size[1] / w, input_size[0] / h], tf.float32)
    uv = (keypoints[..., :2] + 0.5) / stride - 0.5
    start = tf.gather(uv, limbs[:, 0], axis=1)                         # [P, L, 2]
    end = tf.gather(uv, limbs[:, 1], axis=1)
    labelled = ((tf.gather(keypoints[..., 2], limbs[:, 0], axis=1) > 0)
                & (tf.gather(keypoints[..., 2], limbs[:, 1], axis=1) > 0))
    delta = end - start
    length = tf.norm(delta, axis=-1)
    drawn = labelled & (length > 1e-6)
    unit = tf.where(drawn[..., None], delta / tf.where(drawn, length, 1.0)[..., None], 0.0)
    xs, ys = tf.meshgrid(tf.range(w, dtype=tf.float32), tf.range(h, dtype=tf.float32))
    grid = tf.stack([xs, ys], -1)                                      # [h, w, 2]
    rel = grid - start[:, :, None, None]                               # [P, L, h, w, 2]
    along = tf.einsum("plyxc,plc->plyx", rel, unit)
    along = tf.clip_by_value(along, 0.0, tf.broadcast_to(length[:, :, None, None], tf.shape(along)))
    dist = tf.norm(rel - along[..., None] * unit[:, :, None, None], axis=-1)
    on = tf.cast(drawn[:, :, None, None] & (dist <= limb_width), tf.float32)  # [P, L, h, w]
    total = tf.einsum("plyx,plc->yxlc", on, unit)
    count = tf.transpose(tf.reduce_sum(on, axis=0), [1, 2, 0])[..., None]
    pafs = total / tf.maximum(count, 1.0)
    return tf.reshape(pafs, [h, w, 2 * num_limbs]), tf.ones([num_limbs], tf.float32)
