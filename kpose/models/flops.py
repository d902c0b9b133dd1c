"""Parameter and multiply-add counts of a tf_keras functional model, from its structure.

"FLOPs" here are multiply-accumulates (MACs): one multiply and the add that goes with
it count once, the convention of the MobileNet, EfficientNet and Lightweight OpenPose
papers. Tools that count multiplies and adds apart (TensorFlow's profiler, the OpenVINO
model zoo's "GFlops") report about twice these. Lightweight OpenPose at 368x368: 8.88 G
here, 9 G in its paper (multiply-adds: its per-part table matches this count). EfficientPose
RT at 224x224: 0.428 G here; its paper's 0.87 G is the TF profiler's count (0.886 G
measured on the kpose model: 2 per multiply-add plus element-wise ops).

Counted, at batch 1: convolutions of every kind (1D/2D/3D, strided, dilated, grouped,
depthwise, separable, transposed) and Dense, including frozen ones. Not counted: bias
adds, batch norm, activations, pooling, resizing and element-wise merges; these scale
with the activations, not the weights, and are about 1% of a convolutional network's
MACs. A layer with weights whose arithmetic is not modelled here raises rather than
counting as zero.

Per-layer shapes come from the model's own shape inference (`compute_output_shape`) at
the requested input size, so a model built for any size (None) is counted without being
rebuilt or run.
"""
from __future__ import annotations

import numpy as np

from kpose._tf import keras, tf
from kpose.models.registry import input_hw

_LAYERS = keras.layers
_TRANSPOSED = (_LAYERS.Conv1DTranspose, _LAYERS.Conv2DTranspose, _LAYERS.Conv3DTranspose)
_SEPARABLE = (_LAYERS.SeparableConv1D, _LAYERS.SeparableConv2D)
# Checked after the two above, which are subclasses of these.
_CONVOLUTIONS = (_LAYERS.Conv1D, _LAYERS.Conv2D, _LAYERS.Conv3D,
                 _LAYERS.DepthwiseConv1D, _LAYERS.DepthwiseConv2D)
# Layers with weights but no multiply-accumulate with them (per-element or lookups);
# by class name so that e.g. tfmot's QuantizeLayer needs no import here.
_NO_MACS = frozenset({"BatchNormalization", "SyncBatchNormalization", "LayerNormalization",
                      "GroupNormalization", "UnitNormalization", "Normalization", "PReLU",
                      "InstanceNormalization", "QuantizedInstanceNormalization",
                      "Embedding", "QuantizeLayer"})


def count_parameters(model: keras.Model, trainable_only: bool = False) -> int:
    """Number of weights: all of them (batch-norm statistics and frozen layers included,
    as `model.count_params()`), or only the trainable ones."""
    weights = model.trainable_weights if trainable_only else model.weights
    seen: set[int] = set()
    total = 0
    for w in weights:
        # A shared variable is one set of parameters.
        if id(w) not in seen:
            seen.add(id(w))
            total += int(np.prod(w.shape))
    return total


def _input_shape(model: keras.Model, input_size) -> tuple:
    if len(model.inputs) != 1:
        raise ValueError(f"model {model.name!r} has {len(model.inputs)} inputs; FLOP counting "
                         "supports single-input models")
    shape = tuple(model.inputs[0].shape)
    spatial_rank = len(shape) - 2
    if input_size is None:
        spatial = shape[1:-1]
        if any(s is None for s in spatial):
            raise ValueError(f"model {model.name!r} takes any input size {shape}; pass "
                             "input_size=(h, w) to count its FLOPs")
    elif np.isscalar(input_size):
        spatial = (int(input_size),) * spatial_rank
    else:
        spatial = tuple(int(s) for s in input_size)
        if len(spatial) != spatial_rank:
            raise ValueError(f"input_size {input_size!r}: model {model.name!r} needs "
                             f"{spatial_rank} spatial sizes (input shape {shape})")
    if shape[-1] is None:
        raise ValueError(f"model {model.name!r}: its input channel count is undefined")
    return (1, *spatial, shape[-1])


def _layer_tensor_shapes(model: keras.Model, input_shape: tuple) -> list[tuple]:
    """(layer, input shapes, output shapes) for every non-input layer at `input_shape`."""
    layers = [layer for layer in model.layers if not isinstance(layer, _LAYERS.InputLayer)]
    tensors, index = [], {}
    for layer in layers:
        try:
            outputs = tf.nest.flatten(layer.output)
        except AttributeError as err:
            raise ValueError(f"layer {layer.name!r} is called more than once in {model.name!r}; "
                             "FLOP counting needs each layer used once") from err
        for t in outputs:
            index[id(t)] = len(tensors)
            tensors.append(t)
    # A model sharing the layers, with every layer's output exposed: its shape inference
    # gives each intermediate shape without adding nodes to `model` or running it.
    probe = keras.Model(model.inputs, tensors, name=f"{model.name}_shape_probe")
    shapes = _flat_shapes(probe.compute_output_shape(input_shape))
    known = {id(model.inputs[0]): tuple(input_shape)}
    rows = []
    for layer in layers:
        ins = [known.get(id(t)) or shapes[index[id(t)]] for t in tf.nest.flatten(layer.input)]
        outs = [shapes[index[id(t)]] for t in tf.nest.flatten(layer.output)]
        rows.append((layer, ins, outs))
    return rows


def _flat_shapes(structure) -> list[tuple]:
    """Flatten a (nested) list of TensorShapes into tuples."""
    if isinstance(structure, tf.TensorShape):
        return [tuple(structure.as_list())]
    out = []
    for s in structure:
        out += _flat_shapes(s)
    return out


def _positions(shape: tuple, layer) -> int:
    """Spatial positions (batch 1) of a feature-map shape, for the layer's data format."""
    channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
    spatial = shape[2:] if channels_first else shape[1:-1]
    if any(s is None for s in spatial):
        raise ValueError(f"layer {layer.name!r}: spatial shape {shape} is not fully defined")
    return int(np.prod(spatial, dtype=np.int64))


def _size(variable) -> int:
    return int(np.prod(variable.shape, dtype=np.int64))


def _layer_macs(layer, ins: list, outs: list, prefix: str, result: dict) -> None:
    inner = layer
    # Wrappers (QAT's QuantizeWrapper, TimeDistributed) compute their wrapped layer.
    while isinstance(inner, _LAYERS.Wrapper):
        inner = inner.layer
    name = prefix + layer.name
    if isinstance(inner, keras.Model):
        for sub, sub_ins, sub_outs in _layer_tensor_shapes(inner, ins[0]):
            _layer_macs(sub, sub_ins, sub_outs, name + "/", result)
        return
    if isinstance(inner, _TRANSPOSED):
        # Every input pixel meets every kernel weight once (the scatter form).
        result[name] = _positions(ins[0], inner) * _size(inner.kernel)
    elif isinstance(inner, _SEPARABLE):
        result[name] = _positions(outs[0], inner) * (_size(inner.depthwise_kernel)
                                                      + _size(inner.pointwise_kernel))
    elif isinstance(inner, _CONVOLUTIONS):
        # kernel = (*window, in_channels / groups, out_channels) or, depthwise,
        # (*window, in_channels, multiplier): one MAC per output position and weight.
        # Strides and dilation only change the output positions.
        kernel = inner.depthwise_kernel if hasattr(inner, "depthwise_kernel") else inner.kernel
        result[name] = _positions(outs[0], inner) * _size(kernel)
    elif isinstance(inner, _LAYERS.Dense):
        result[name] = int(np.prod(outs[0][1:-1], dtype=np.int64)) * _size(inner.kernel)
    elif inner.weights and type(inner).__name__ not in _NO_MACS:
        raise ValueError(f"layer {name!r} ({type(inner).__name__}) has weights but its "
                         "multiply-adds are not modelled; add a rule to kpose.models.flops")


def flops_by_layer(model: keras.Model, input_size: int | tuple | None = None) -> dict[str, int]:
    """Multiply-adds of each counted layer at batch 1 ("outer/inner" names for nested models).

    input_size: int or spatial sizes (h, w); None uses the model's fixed input size.
    """
    result: dict[str, int] = {}
    for layer, ins, outs in _layer_tensor_shapes(model, _input_shape(model, input_size)):
        _layer_macs(layer, ins, outs, "", result)
    return result


def count_flops(model: keras.Model, input_size: int | tuple | None = None) -> int:
    """Multiply-adds (MACs) of one forward pass at batch 1; see the module docstring for
    what is counted. input_size: int or (h, w); None uses the model's fixed size."""
    return int(sum(flops_by_layer(model, input_size).values()))


# The builders' analytic cost functions (efficientpose_cost, simplepose_cost) count from a
# variant's config without building it; tests check them equal to the two counts above.
BATCH_NORM_WEIGHTS = 4  # gamma, beta, moving mean, moving variance per channel


class CostTally:
    """Running parameter and multiply-add counts of a network described layer by layer."""

    def __init__(self) -> None:
        self.params = 0
        self.macs = 0

    def add(self, positions: int, weights: int, out: int, bias: bool = False, norm: bool = False) -> None:
        """A layer with `weights` multiplying weights in all and `out` output channels (plus their
        bias or batch norm), applied at `positions` pixels."""
        self.params += weights + (out if bias else 0) + (BATCH_NORM_WEIGHTS * out if norm else 0)
        self.macs += positions * weights

    def conv(self, positions: int, cin: int, cout: int, kernel: int, bias: bool = False, norm: bool = False) -> None:
        """A dense kernel x kernel convolution cin -> cout at `positions` pixels."""
        self.add(positions, kernel * kernel * cin * cout, cout, bias, norm)


def variant_grid(family: str, variants: dict, variant: str, input_size, stride: int) -> tuple[dict, int, int]:
    """(config, h, w) for a cost function: the variant's config and a concrete input size, each
    side a multiple of the network's stride; an unknown variant or an open size raises."""
    if variant not in variants:
        raise ValueError(f"variant {variant!r} of {family}: known variants are {sorted(variants)}")
    h, w = input_hw(input_size, stride)
    if h is None or w is None:
        raise ValueError(f"the {family} cost needs a concrete input_size (h, w), not {input_size!r}")
    return variants[variant], h, w
