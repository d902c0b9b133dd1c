"""Quantisation-aware training (QAT) with tensorflow-model-optimization.

tfmot's default 8-bit scheme covers convolutions (with their batch norms folded),
transposed convolutions, adds, concatenations and standard activations. kpose
models also use layers it has no entry for; each of them gets an explicit
`QuantizeConfig` or an int8-friendly replacement here (the tables below; the layers and
configs, and why each, in kpose.models.quantized_layers), so no layer is ever skipped
silently. A layer type that is neither supported by tfmot nor listed here raises an error
naming it, instead of leaving it in float.
"""
from __future__ import annotations

from contextlib import contextmanager

from kpose._tf import keras, tf  # noqa: I001  (TF before tfmot: _tf sets the Keras switch)

import tensorflow_model_optimization as tfmot  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras import quant_ops  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_layout_transform import (  # noqa: E402,E501
    Default8BitQuantizeLayoutTransform)
from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras.quantize_wrapper import (  # noqa: E402
    QuantizeWrapper, QuantizeWrapperV2)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_registry as default_registry)

from kpose.models.concat_scales import ScaledConcatenate, with_concat_scales  # noqa: E402
from kpose.models.quantized_layers import (CUSTOM_OBJECTS, IntegerELU, NoQuantizeConfig,  # noqa: E402
                                           OutputQuantizeConfig, QuantizedBatchNormalization,
                                           QuantizedHardSigmoid, QuantizedInstanceNormalization)


# Layer types kpose models use that tfmot's default registry does not handle.
# ScaledConcatenate: its inputs keep their own ranges, its MULs and concatenation share the
# output's (int8 TFLite's CONCATENATION has one scale for inputs and output).
OUTPUT_QUANTIZED_LAYERS = ("Rescaling", "Multiply", "ScaledConcatenate")
# Replaced in the QAT copy by a layer computing the same function in int8-friendly
# steps: type name -> (config of the float layer -> the replacement).
REPLACED_LAYERS = {
    "ELU": lambda c: IntegerELU(alpha=c.get("alpha", 1.0), fake_quant=True, name=c["name"]),
    "InstanceNormalization": lambda c: QuantizedInstanceNormalization(c["epsilon"], fake_quant=True,
                                                                      name=c["name"]),
    "HardSigmoid": lambda c: QuantizedHardSigmoid(fake_quant=True, name=c["name"]),
}
# Same-scale ops in int8 TFLite: wrapped, no range of their own.
SAME_SCALE_LAYERS = ("ResizeBilinearLike",)
# Handled by tfmot's model transforms (folded into the preceding convolution).
FOLDED_LAYERS = ("BatchNormalization",)


def quantize_scope():
    """Context in which kpose's QAT models can be built, cloned and loaded."""
    return tfmot.quantization.keras.quantize_scope(dict(CUSTOM_OBJECTS, ScaledConcatenate=ScaledConcatenate))




def _unfoldable_batch_norms(net: keras.Model) -> set[str]:
    """Names of the batch norms tfmot cannot fold: those a Conv2DTranspose feeds (with gamma
    and beta; any other lone batch norm fails in quantize_model, loudly)."""
    names = set()
    for layer in net.layers:
        if type(layer) is keras.layers.BatchNormalization and layer.center and layer.scale and any(
                type(node.inbound_layers) is keras.layers.Conv2DTranspose for node in layer._inbound_nodes):
            names.add(layer.name)
    return names


# _plan's mark for a layer tfmot's registry gives its config (after its transforms).
BY_REGISTRY = "tfmot registry"


def _plan(layer, unfoldable: set[str]):
    """The QAT copy's fresh layer for `layer` and how it is quantised: None (not quantised: the
    input), a QuantizeConfig, or BY_REGISTRY."""
    kind = type(layer).__name__
    if layer.name in unfoldable:
        c = layer.get_config()
        return QuantizedBatchNormalization(c["epsilon"], c["momentum"], name=c["name"]), OutputQuantizeConfig()
    if kind in REPLACED_LAYERS:
        return REPLACED_LAYERS[kind](layer.get_config()), OutputQuantizeConfig()
    fresh = layer.__class__.from_config(layer.get_config())
    if kind in OUTPUT_QUANTIZED_LAYERS:
        return fresh, OutputQuantizeConfig()
    if kind in SAME_SCALE_LAYERS:
        return fresh, NoQuantizeConfig()
    if isinstance(layer, keras.layers.InputLayer):
        return fresh, None
    if kind in FOLDED_LAYERS:
        # tfmot's Conv+BN transform gives it a config when it follows a convolution; a lone
        # batch norm fails in quantize_model, loudly.
        return fresh, BY_REGISTRY
    if not default_registry.Default8BitQuantizeRegistry().supports(layer):
        raise ValueError(
            f"QAT: layer {layer.name!r} of type {kind} has no 8-bit quantize config; add it to "
            f"kpose.models.quantize (OUTPUT_QUANTIZED_LAYERS for weightless layers) so it is not left in float")
    return fresh, BY_REGISTRY


# Without autograph, Keras calls each layer as written while it builds the copies, instead of
# converting every layer's (and quantiser's) call first: ~20% of the time, the same network.
@tf.autograph.experimental.do_not_convert
def quantize_model(net: keras.Model, concat_scales: dict[str, list[float]] | None = None) -> keras.Model:
    """A QAT copy of `net` (fake-quant nodes everywhere, BN folded), carrying `net`'s weights.

    concat_scales: kpose.models.concat_scales.concat_scales of `net` (recorded in the QAT
    model's config, so that loading rebuilds the same network): those concatenations' inputs
    are rescaled first, an equal-function copy whose int8 grid fits each input.

    The network tfmot's quantize_annotate + quantize_apply make, built from two graph copies
    instead of five: quantize_apply copies an annotated model twice (keeping weights, then
    dropping the annotations) before its transforms; here the first copy is already the plain
    one, with the plan on the side (benchmarks/setup_costs.py; the same network as
    quantize_model_via_tfmot, tests/test_quantize.py).
    """
    net = with_concat_scales(net, concat_scales or {})
    unfoldable = _unfoldable_batch_norms(net)
    # Layer name -> {"quantize_config": config, None for the registry's}: what tfmot's
    # transforms read and update (folded batch norms get theirs there).
    plan = {}

    def plain(layer):
        fresh, config = _plan(layer, unfoldable)
        if config is not None:
            plan[fresh.name] = {"quantize_config": None if config is BY_REGISTRY else config}
        return fresh

    registry = default_registry.Default8BitQuantizeRegistry()

    def wrap(layer):
        if isinstance(layer, QuantizeLayer):  # the input's, added by the transforms
            config = dict(layer.get_config(), **plan.get(layer.name, {}))
            return layer if len(layer._outbound_nodes) > 1 else QuantizeLayer.from_config(config)
        if layer.name not in plan or isinstance(layer, QuantizeWrapper):
            return layer
        config = plan[layer.name].get("quantize_config")
        if config is None:
            if not registry.supports(layer):
                raise ValueError(f"QAT: layer {layer.name!r} ({type(layer).__name__}) has no 8-bit quantize config "
                                 f"after tfmot's transforms (a batch norm after no convolution?)")
            config = registry.get_quantize_config(layer)
        return QuantizeWrapperV2(layer, config, name_prefix="quant_")

    with quantize_scope():
        copy = keras.models.clone_model(net, clone_function=plain)
        _copy_weights(net, copy)
        plan.update({layer.name: {} for layer in copy._input_layers})  # the transforms match inputs too
        transformed, plan = Default8BitQuantizeLayoutTransform().apply(copy, plan)
        qat_net = keras.models.clone_model(transformed, clone_function=wrap)
    _keep_fixed_layers_fixed(qat_net)
    return qat_net


def quantize_model_via_tfmot(net: keras.Model) -> keras.Model:
    """The same QAT network through tfmot's public path (annotate every layer by the same
    plan, quantize_apply): the reference quantize_model is tested and benchmarked against."""
    unfoldable = _unfoldable_batch_norms(net)

    def annotate(layer):
        fresh, config = _plan(layer, unfoldable)
        if config is None:
            return fresh
        return tfmot.quantization.keras.quantize_annotate_layer(fresh, None if config is BY_REGISTRY else config)

    with quantize_scope():
        annotated = keras.models.clone_model(net, clone_function=annotate)
        _copy_weights(net, annotated)
        qat_net = tfmot.quantization.keras.quantize_apply(annotated)
    _keep_fixed_layers_fixed(qat_net)
    return qat_net


def _keep_fixed_layers_fixed(qat_net: keras.Model) -> None:
    """tfmot's QuantizeWrapper lists the weights it fake-quantises (kernels) as trainable even
    when its layer is not: its build appends them to the wrapper's own trainable list, and
    the wrapper's `trainable_weights` ignores `trainable`. An optimizer would then move
    kpose's fixed layers (the input normalisation, EfficientPose's bilinear upscaling, a
    frozen backbone) in QAT. Their weights go to the non-trainable list (the same variables:
    the saved weights keep their values; within such a layer the kernel now follows the
    bias)."""
    for layer in qat_net.layers:
        inner = getattr(layer, "layer", None)
        if inner is None or inner.trainable or not layer._trainable_weights:
            continue
        # Private lists: the wrapper offers no other way to untrack a weight as trainable.
        layer._non_trainable_weights[:0] = layer._trainable_weights
        layer._trainable_weights = []


def _copy_weights(src: keras.Model, dst: keras.Model) -> None:
    """Layer by layer, in order: a replacement layer has the float layer's weights first,
    then its own ranges (left at their initial values)."""
    if len(src.layers) != len(dst.layers):
        raise AssertionError(f"QAT clone of {src.name} has {len(dst.layers)} layers, the model {len(src.layers)}")
    for a, b in zip(src.layers, dst.layers):
        weights = a.get_weights()
        if weights:
            b.set_weights(weights + b.get_weights()[len(weights):])


def integer_network(net: keras.Model) -> keras.Model:
    """A copy of a float network for post-training int8 export: layers TFLite's int8
    converter cannot quantise are replaced by the same function in ops it can (ELU ->
    IntegerELU); the network itself when there are none. Same weights, same outputs."""
    if not any(type(l).__name__ == "ELU" for l in net.layers):
        return net

    def replace(layer):
        if type(layer).__name__ == "ELU":
            return IntegerELU(alpha=layer.get_config().get("alpha", 1.0), name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    with keras.utils.custom_object_scope(CUSTOM_OBJECTS):
        out = keras.models.clone_model(net, clone_function=replace)
    _copy_weights(net, out)
    return out


def float_layer_names(qat_net: keras.Model) -> list[str]:
    """Layers of a QAT model left without quantisation (should be empty apart from
    the input and folded batch norms)."""
    out = []
    for layer in qat_net.layers:
        kind = type(layer).__name__
        if kind in ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer", "InputLayer"):
            continue
        out.append(layer.name)
    return out


@contextmanager
def frozen_batch_norms(qat_net: keras.Model):
    """Inside, the batch norms of a QAT network run in inference mode under training=True:
    they normalise with their moving statistics and do not update them (gamma and beta still
    learn), so fine-tuning and range calibration see the activations the deployed network
    computes, not those of each small batch's statistics.

    Compile the training step inside the block (Keras reads `trainable` when it builds it).
    On leaving, they are trainable again: QuantizeWrapper would otherwise list the frozen
    gamma/beta twice (trainable and not), which breaks saving.
    """
    frozen = []
    for layer in qat_net.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, keras.layers.BatchNormalization) and inner.trainable:
            inner.trainable = False
            frozen.append(inner)
    try:
        yield frozen
    finally:
        for inner in frozen:
            inner.trainable = True


# Training batches that set the QAT activation ranges before fine-tuning (on the quick-start
# model: fake-quant AP 0.000 with tfmot's initial ranges, 0.629 after 16 batches; float 0.660).
CALIBRATION_BATCHES = 16


def calibrate_ranges(qat_net: keras.Model, batches, strategy=None) -> int:
    """Set the activation ranges of a fresh QAT model from data; returns the batch count.

    tfmot starts every moving-average range at [-6, 6] and moves it 0.1% a step, so
    through a short fine-tune the ranges stay far from the data's: wide activations
    are clipped at 6 and narrow ones (sigmoid gates, heatmaps) get a grid several
    times too coarse. Here each range becomes the mean of its per-batch extremes
    over `batches` (input tensors or (input, ...) tuples) -- what the moving average
    converges to -- before training starts. Runs the network in training mode, as
    QAT training does (batch-norm statistics move by a few percent).
    """
    strategy = strategy or tf.distribute.get_strategy()
    decay = tf.Variable(0.0, trainable=False, dtype=tf.float32)
    original = quant_ops.MovingAvgQuantize

    def running_mean(*args, ema_decay=0.999, **kwargs):  # decay (n-1)/n: a running mean
        return original(*args, ema_decay=decay, **kwargs)

    # Patched only while the calibration function is traced: training later traces
    # its own function with tfmot's moving average.
    quant_ops.MovingAvgQuantize = running_mean
    try:
        call = tf.function(lambda x: strategy.run(lambda y: qat_net(y, training=True), (x,)), autograph=False)
        n = 0
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            decay.assign(n / (n + 1))
            call(x)
            n += 1
    finally:
        quant_ops.MovingAvgQuantize = original
    if n == 0:
        raise ValueError("calibrate_ranges: no batches given")
    return n


__all__ = ["quantize_model", "quantize_scope", "calibrate_ranges", "frozen_batch_norms", "CALIBRATION_BATCHES",
           "float_layer_names", "integer_network"]
