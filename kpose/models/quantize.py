"""Quantisation-aware training (QAT) with tensorflow-model-optimization.

tfmot's default 8-bit scheme covers convolutions (with their batch norms folded),
transposed convolutions, adds, concatenations and standard activations. kpose
models also use layers it has no entry for; each of them gets an explicit
`QuantizeConfig` here, so no layer is ever skipped silently:

* ``Rescaling`` (the E-swish beta) and ``Multiply`` (squeeze-excitation) and ``ELU`` (Lightweight OpenPose) carry no
  weights: their output is fake-quantised with a moving-average range, which is
  what the int8 TFLite MUL kernel needs. (A Rescaling with an offset would be a
  MUL and an ADD with no range between them; kpose's input normalisation is a
  1x1 depthwise convolution for that reason.)

A layer type that is neither supported by tfmot nor listed here raises an error
naming it, instead of leaving it in float.
"""
from __future__ import annotations

from kpose._tf import keras, tf  # noqa: I001  (TF before tfmot: _tf sets the Keras switch)

import tensorflow_model_optimization as tfmot  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras import quant_ops  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_registry as default_registry)


class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Fake-quantise a weightless layer's output (8 bit, asymmetric, per tensor)."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


# Layer types kpose models use that tfmot's default registry does not handle.
OUTPUT_QUANTIZED_LAYERS = ("Rescaling", "Multiply", "ELU")
# Handled by tfmot's model transforms (folded into the preceding convolution).
FOLDED_LAYERS = ("BatchNormalization",)


def quantize_scope():
    """Context in which kpose's QAT models can be built, cloned and loaded."""
    return tfmot.quantization.keras.quantize_scope({"OutputQuantizeConfig": OutputQuantizeConfig})


def _annotate(layer):
    annotate = tfmot.quantization.keras.quantize_annotate_layer
    kind = type(layer).__name__
    fresh = layer.__class__.from_config(layer.get_config())
    if kind in OUTPUT_QUANTIZED_LAYERS:
        return annotate(fresh, OutputQuantizeConfig())
    if isinstance(layer, keras.layers.InputLayer):
        return fresh
    if kind in FOLDED_LAYERS:
        # Annotated without a config: tfmot's Conv+BN transform gives it one when it
        # follows a convolution; a lone batch norm fails in quantize_apply, loudly.
        return annotate(fresh)
    if not default_registry.Default8BitQuantizeRegistry().supports(layer):
        raise ValueError(
            f"QAT: layer {layer.name!r} of type {kind} has no 8-bit quantize config; add it to "
            f"kpose.models.quantize (OUTPUT_QUANTIZED_LAYERS for weightless layers) so it is not left in float")
    return annotate(fresh)


def quantize_model(net: keras.Model) -> keras.Model:
    """A QAT copy of `net` (fake-quant nodes everywhere, BN folded), carrying `net`'s weights."""
    with quantize_scope():
        annotated = keras.models.clone_model(net, clone_function=_annotate)
        annotated.set_weights(net.get_weights())
        return tfmot.quantization.keras.quantize_apply(annotated)


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
        call = tf.function(lambda x: strategy.run(lambda y: qat_net(y, training=True), (x,)))
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


__all__ = ["quantize_model", "quantize_scope", "calibrate_ranges", "CALIBRATION_BATCHES", "float_layer_names"]
