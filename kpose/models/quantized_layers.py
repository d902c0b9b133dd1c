"""The layers and quantize configs of kpose's QAT copies, for layers tfmot's default 8-bit
scheme has no entry for (kpose.models.quantize says which layer gets which):

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
"""
from __future__ import annotations

from kpose._tf import keras, tf  # noqa: I001  (TF before tfmot: _tf sets the Keras switch)

import tensorflow_model_optimization as tfmot  # noqa: E402
from tensorflow_model_optimization.python.core.keras import utils as tfmot_utils  # noqa: E402


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


CUSTOM_OBJECTS = {"OutputQuantizeConfig": OutputQuantizeConfig, "NoQuantizeConfig": NoQuantizeConfig,
                  "IntegerELU": IntegerELU, "QuantizedInstanceNormalization": QuantizedInstanceNormalization,
                  "QuantizedHardSigmoid": QuantizedHardSigmoid,
                  "QuantizedBatchNormalization": QuantizedBatchNormalization}
