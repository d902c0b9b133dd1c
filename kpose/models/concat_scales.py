"""Concatenations whose inputs have very different ranges, rescaled for int8.

An int8 TFLite CONCATENATION has one scale for all its inputs and its output (the
converter propagates it back into the layers that produce the inputs), so an input
much narrower than another is quantised on the wide one's grid. EfficientPose
concatenates each detection pass's output (|x| < 2) with the backbone's features
(|x| up to 32): every tensor of the first two passes then gets a step of 0.16 where
its own range would give 0.016 -- a few levels across the values it carries.

`concat_scales` measures the inputs' ranges on sample inputs and picks, for each
such concatenation, a power-of-two factor per input that brings its range within 2x
of the narrowest one; `with_concat_scales` writes the network with those
concatenations replaced by `ScaledConcatenate` (each input multiplied by its factor,
one int8 MUL) and the convolutions they feed divided by the same factors along their
input channels. Powers of two are exact in floating point, so the float function is
unchanged to the last bit of each product; only the int8 grid changes.
"""
from __future__ import annotations

import numpy as np

from kpose._tf import keras, tf

# Inputs whose range is within this factor of the narrowest one's keep their scale.
RANGE_RATIO = 2.0
SAMPLE_BATCH = 8
# Inputs the ranges are measured on (a factor needs the order of magnitude of each input's
# range, not its exact value).
CONCAT_SCALE_SAMPLES = 16


class ScaledConcatenate(keras.layers.Concatenate):
    """Concatenate after multiplying each input by a constant (1 leaves it as it is)."""

    def __init__(self, scales, axis: int = -1, **kwargs) -> None:
        super().__init__(axis=axis, **kwargs)
        self.scales = [float(s) for s in scales]

    def _merge_function(self, inputs):
        if len(inputs) != len(self.scales):
            raise ValueError(f"{self.name}: {len(inputs)} inputs, {len(self.scales)} scales")
        return super()._merge_function([x if s == 1.0 else x * tf.constant(s, x.dtype)
                                        for x, s in zip(inputs, self.scales)])

    def get_config(self) -> dict:
        return dict(super().get_config(), scales=self.scales)


def _consumers(layer, net: keras.Model) -> list:
    """The layers of `net` that read `layer`'s output (a layer also used by a larger model,
    e.g. a training network around this inference network, has consumers outside `net`)."""
    members = {id(l) for l in net.layers}
    return [node.outbound_layer for node in layer._outbound_nodes if id(node.outbound_layer) in members]


def _rescalable(layer, net: keras.Model) -> bool:
    """A last-axis concatenation feeding only convolutions that can take the factors into
    their kernels (not a model output)."""
    if type(layer) is not keras.layers.Concatenate or len(layer._inbound_nodes) != 1:
        return False
    if layer.axis not in (-1, len(layer.output.shape) - 1):
        return False
    if any(layer.output is out for out in net.outputs):
        return False
    users = _consumers(layer, net)
    return bool(users) and all(
        (type(u) is keras.layers.DepthwiseConv2D or (type(u) is keras.layers.Conv2D and u.groups == 1))
        and len(u._inbound_nodes) == 1 for u in users)


def first_inputs(batches, n: int = CONCAT_SCALE_SAMPLES) -> np.ndarray:
    """The first `n` model inputs of `batches` (input tensors or (input, ...) tuples), stacked:
    the samples `concat_scales` measures ranges on. Every worker of a multi-worker run
    iterates the same seeded global batches here (kpose.training.distribute.shard_by_data
    splits them only when distributed), so all pick the same scales."""
    xs, count = [], 0
    for batch in batches:
        x = np.asarray(batch[0] if isinstance(batch, (tuple, list)) else batch)
        xs.append(x)
        count += len(x)
        if count >= n:
            break
    if not xs:
        raise ValueError("first_inputs: no batches given")
    return np.concatenate(xs)[:n]


def concat_scales(net: keras.Model, samples: np.ndarray) -> dict[str, list[float]]:
    """Power-of-two factors per input of each concatenation whose input ranges (max |x| on
    `samples`, model inputs) differ by more than RANGE_RATIO; {} where none do."""
    layers = [layer for layer in net.layers if _rescalable(layer, net)]
    if not layers:
        return {}
    tensors = [t for layer in layers for t in layer.input]
    probe = keras.Model(net.inputs, tensors)
    samples = np.asarray(samples, np.float32)
    peaks = np.zeros(len(tensors))
    for i in range(0, len(samples), SAMPLE_BATCH):
        outs = probe(samples[i:i + SAMPLE_BATCH], training=False)
        peaks = np.maximum(peaks, [float(tf.reduce_max(tf.abs(o))) for o in outs])
    scales, k = {}, 0
    for layer in layers:
        ranges = peaks[k:k + len(layer.input)]
        k += len(layer.input)
        live = ranges[ranges > 0]  # an input that is 0 on every sample has no grid to keep
        if len(live) < 2:
            continue
        narrowest = float(live.min())
        factors = [1.0 if r <= RANGE_RATIO * narrowest else float(2.0 ** np.floor(np.log2(narrowest / r)))
                   for r in ranges]
        if any(f != 1.0 for f in factors):
            scales[layer.name] = factors
    return scales


def with_concat_scales(net: keras.Model, scales: dict[str, list[float]]) -> keras.Model:
    """An equal-function copy of `net` with the concatenations named in `scales` scaled and
    the convolutions they feed compensated; `net` itself when `scales` is empty."""
    if not scales:
        return net
    for name in scales:
        if not _rescalable(net.get_layer(name), net):
            raise ValueError(f"concat_scales: layer {name!r} of {net.name} is not a concatenation feeding "
                             f"convolutions only; its inputs cannot be rescaled")

    def clone(layer):
        if layer.name in scales:
            return ScaledConcatenate(scales[layer.name], axis=layer.axis, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    out = keras.models.clone_model(net, clone_function=clone)
    out.set_weights(net.get_weights())
    for name, factors in scales.items():
        widths = [int(t.shape[-1]) for t in net.get_layer(name).input]
        divisor = np.repeat(np.asarray(factors, np.float32), widths)
        for user in _consumers(net.get_layer(name), net):
            copy = out.get_layer(user.name)
            weights = copy.get_weights()
            weights[0] = weights[0] / divisor[None, None, :, None]  # [kh, kw, in, out or multiplier]
            copy.set_weights(weights)
    return out


__all__ = ["ScaledConcatenate", "concat_scales", "with_concat_scales", "first_inputs", "RANGE_RATIO",
           "CONCAT_SCALE_SAMPLES"]
