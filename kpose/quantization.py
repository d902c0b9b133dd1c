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
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

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


__all__ = ["quantize_model", "quantize_scope", "calibrate_ranges", "CALIBRATION_BATCHES", "float_layer_names", "tf"]


def distill_qat(model, data, steps: int = 300, batch_size: int = 8, lr: float = 1e-4,
                foreground_weight: float = 10.0, augment: dict | None = None, seed: int = 0,
                progress: bool = True):
    """Quantisation-aware fine-tuning without labels, by self-distillation.

    The QAT copy of a trained float PoseModel learns to reproduce the float model's
    own heatmaps on augmented person crops of `data` (any data spec with person boxes;
    its keypoints are not used, so its skeleton need not match the model's). This
    quantises models whose training data is not at hand, such as the official
    EfficientPose releases. Batch norms stay frozen (tiny batches of other data must
    not move their statistics); the fake-quant ranges and weights adapt.
    Returns the QAT PoseModel (config "quantization": "qat"; export with precision "qat").
    """
    from tqdm import tqdm

    from kpose.data.pipeline import train_dataset
    from kpose.data.sources import load_instances
    from kpose.deploy.graph import export_network
    from kpose.pose_model import PoseModel
    from kpose.recipe import DEFAULTS

    teacher = export_network(model)
    student = quantize_model(teacher)
    frozen = []
    for layer in student.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, keras.layers.BatchNormalization):
            inner.trainable = False  # inference-mode batch norm under training=True
            frozen.append(inner)
    instances = load_instances(data, "train", progress=False)
    aug = dict(DEFAULTS["augment"], **(augment or {}))
    ds = train_dataset(instances, model.input_size, [], aug, batch_size, seed=seed)
    calibrate_ranges(student, (x for x, _, _ in ds.take(CALIBRATION_BATCHES)))
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps))

    @tf.function
    def step(x):
        target = teacher(x, training=False)
        weight = 1.0 + foreground_weight * tf.maximum(target, 0.0)
        with tf.GradientTape() as tape:
            out = student(x, training=True)
            loss = tf.reduce_mean(weight * tf.square(out - target))
        grads = tape.gradient(loss, student.trainable_variables)
        opt.apply_gradients(zip(grads, student.trainable_variables))
        return loss

    bar = tqdm(ds.take(steps), total=steps, desc="distill QAT", disable=not progress)
    for x, _, _ in bar:
        bar.set_postfix(loss=f"{float(step(x)):.2e}")
    # Un-freeze: QuantizeWrapper would otherwise list the frozen gamma/beta twice
    # (trainable and not), which breaks saving.
    for inner in frozen:
        inner.trainable = True
    config = {k: v for k, v in model.config.items() if k != "output_channel_order"}
    config.update(quantization="qat", qat={"method": "self-distillation", "data": str(data),
                                           "steps": steps, "batch_size": batch_size, "lr": lr})
    return PoseModel(student, config)
