"""Quantisation-aware training (QAT) with tensorflow-model-optimization.

tfmot's default 8-bit scheme covers convolutions (with their batch norms folded),
transposed convolutions, adds, concatenations and standard activations. kpose
models also use layers it has no entry for; each of them gets an explicit
`QuantizeConfig` here, so no layer is ever skipped silently:

* ``Rescaling`` (the E-swish beta) and ``Multiply`` (squeeze-excitation) carry no
  weights: their output is fake-quantised with a moving-average range, which is
  what the int8 TFLite MUL kernel needs. (A Rescaling with an offset would be a
  MUL and an ADD with no range between them; kpose's input normalisation is a
  1x1 depthwise convolution for that reason.)

A layer type that is neither supported by tfmot nor listed here raises an error
naming it, instead of leaving it in float.
"""
from __future__ import annotations

from kpose._tf import keras, tf

_tfmot = None


def _mot():
    global _tfmot
    if _tfmot is None:
        import tensorflow_model_optimization as tfmot
        _tfmot = tfmot
    return _tfmot


def _output_quantize_config_class():
    tfmot = _mot()

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

    return OutputQuantizeConfig


_CONFIG_CLASS = None


def _config_class():
    global _CONFIG_CLASS
    if _CONFIG_CLASS is None:
        _CONFIG_CLASS = _output_quantize_config_class()
    return _CONFIG_CLASS


# Layer types kpose models use that tfmot's default registry does not handle.
OUTPUT_QUANTIZED_LAYERS = ("Rescaling", "Multiply")
# Handled by tfmot's model transforms (folded into the preceding convolution).
FOLDED_LAYERS = ("BatchNormalization",)


def quantize_scope():
    """Context in which kpose's QAT models can be built, cloned and loaded."""
    return _mot().quantization.keras.quantize_scope({"OutputQuantizeConfig": _config_class()})


def _annotate(layer):
    tfmot = _mot()
    annotate = tfmot.quantization.keras.quantize_annotate_layer
    kind = type(layer).__name__
    fresh = layer.__class__.from_config(layer.get_config())
    if kind in OUTPUT_QUANTIZED_LAYERS:
        return annotate(fresh, _config_class()())
    if isinstance(layer, keras.layers.InputLayer):
        return fresh
    if kind in FOLDED_LAYERS:
        # Annotated without a config: tfmot's Conv+BN transform gives it one when it
        # follows a convolution; a lone batch norm fails in quantize_apply, loudly.
        return annotate(fresh)
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry)
    if not registry.Default8BitQuantizeRegistry().supports(layer):
        raise ValueError(
            f"QAT: layer {layer.name!r} of type {kind} has no 8-bit quantize config; add it to "
            f"kpose.quantization (OUTPUT_QUANTIZED_LAYERS for weightless layers) so it is not left in float")
    return annotate(fresh)


def quantize_model(net: keras.Model) -> keras.Model:
    """A QAT copy of `net` (fake-quant nodes everywhere, BN folded), carrying `net`'s weights."""
    tfmot = _mot()
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


__all__ = ["quantize_model", "quantize_scope", "float_layer_names", "tf"]
