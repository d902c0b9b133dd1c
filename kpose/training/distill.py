"""Label-free quantisation-aware training: a QAT copy learns a float model's own output maps."""
from __future__ import annotations

import logging

import numpy as np
from tqdm import tqdm

from kpose._tf import keras, tf
from kpose.data.bottom_up import bottom_up_dataset
from kpose.data.pipeline import augmented_crops
from kpose.data.sources import load_images, load_instances
from kpose.models import BOTTOM_UP
from kpose.models.concat_scales import concat_scales, first_inputs
from kpose.models.quantize import CALIBRATION_BATCHES, calibrate_ranges, frozen_batch_norms, quantize_model
from kpose.pose_model import PoseModel
from kpose.recipe import DEFAULTS
from kpose.training.optimizers import FusedAdam

log = logging.getLogger(__name__)
WATCHED_BATCHES = 10  # the loss before training and over the last steps: means over this many batches
# Weight of the feature term (mean over the taps of each tap's squared error over the float
# tap's variance) against the output maps' loss. Official RT, 300 steps, det int8 (docs/results.md,
# session 26): 0 -> 2.22 px median, p90 9.5, PCKh = float; 0.1 -> 1.99 px, p90 7.0, PCKh = float;
# 1 -> 1.96 px, p90 6.5, but PCKh 4 keypoints lower (the maps' own term drowned).
FEATURE_WEIGHT = 0.1


def feature_taps(net: keras.Model, rescaled=()) -> list[str]:
    """Names of the layers whose outputs the QAT copy also learns: each residual sum and
    concatenation (where blocks and passes end), not the concatenations `rescaled` for int8
    (their outputs differ from the float network's by design) nor the network's outputs."""
    outputs = {id(t) for t in tf.nest.flatten(net.outputs)}
    return [layer.name for layer in net.layers
            if type(layer) in (keras.layers.Add, keras.layers.Concatenate) and layer.name not in rescaled
            and len(layer._inbound_nodes) == 1 and id(layer.output) not in outputs]


def _layer(net: keras.Model, name: str):
    """`name`'s layer in a QAT copy: tfmot wraps a quantised layer as quant_<name>."""
    names = {layer.name for layer in net.layers}
    return net.get_layer(f"quant_{name}" if f"quant_{name}" in names else name)


def check_float(config: dict) -> None:
    """Raise unless `config` is a float model's: distill_qat quantises float models only."""
    if config.get("quantization") == "qat":
        raise ValueError("distill_qat: the model is already quantisation-aware (config quantization: qat); "
                         "give its float model (a --qat run's model_float/, or the float run it started from)")


def distill_qat(model, data, steps: int = 300, batch_size: int = 8, lr: float = 3e-4,
                foreground_weight: float = 10.0, augment: dict | None = None, seed: int = 0,
                feature_weight: float = FEATURE_WEIGHT, progress: bool = True):
    """Quantisation-aware fine-tuning without labels, by self-distillation.

    The QAT copy of a trained float PoseModel learns to reproduce the float model's own
    outputs on augmented inputs from `data`: person crops for a top-down model (any data
    spec with person boxes), whole images for a bottom-up one (any COCO-format spec; its
    heatmaps and limb maps: PAFs or limb heatmaps). Keypoints are not used, so the data's
    skeleton need not match the model's and unlabelled people teach as much as labelled
    ones. This quantises models whose training data is not at hand, such as the official
    EfficientPose and tf-pose-estimation releases. Batch norms stay frozen (tiny batches
    of other data must not move their statistics); the fake-quant ranges and weights adapt.
    `augment`: the recipe's augment keys for crops, kpose.data.bottom_up's for whole images.
    foreground_weight: extra weight where a target map is away from 0 (peaks and limbs).
    feature_weight: weight of the inner features' term: at each block's and pass's end
    (`feature_taps`) the copy's squared error over the float feature's variance, averaged
    over the taps; 0 learns the output maps only. Int8 noise builds up inside the network
    long before it shows in the maps (benchmarks/int8_error_profile.py): the feature term
    gives each block its own target.
    lr 3e-4: official RT 300 steps at 1e-4 PCKh 0.682, 800 at 3e-4 0.909; the tf-pose release
    on real photos 300 at 3e-4 AP 0.119 (one run; runs vary by ~0.015: docs/results.md).
    Returns the QAT PoseModel (config "quantization": "qat"; export with precision "qat"),
    with the loss before and after training in config["qat"]; a warning names the fix when it
    rose (the QAT copy left the float function: too high an lr for that model).
    """
    check_float(model.config)
    teacher = model.keras_model
    if model.task == BOTTOM_UP:
        records = load_images(data, "train", progress=False)
        ds = bottom_up_dataset(records, model.input_size, augment, batch_size, seed=seed).map(
            lambda images, keypoints, ignore: images)
    else:
        instances = load_instances(data, "train", progress=False)
        aug = dict(DEFAULTS["augment"], **(augment or {}))
        ds = augmented_crops(instances, model.input_size, aug, seed=seed).batch(batch_size, drop_remainder=True)
        ds = ds.map(lambda x, _: x)
    scales = concat_scales(teacher, first_inputs(ds))
    student = quantize_model(teacher, scales)
    opt = FusedAdam(keras.optimizers.schedules.CosineDecay(lr, steps))
    taps = feature_taps(teacher, scales) if feature_weight else []
    maps = len(tf.nest.flatten(teacher.outputs))
    # The same networks with the taps as extra outputs (shared layers: training one trains the other).
    teacher_taps = keras.Model(teacher.inputs, tf.nest.flatten(teacher.outputs)
                               + [teacher.get_layer(n).output for n in taps])
    student_taps = keras.Model(student.inputs, tf.nest.flatten(student.outputs)
                               + [_layer(student, n).output for n in taps])

    # Each tap's squared error is divided by the float feature's variance over the first
    # batches, fixed, so that no single batch (2 tiny images in a test) can shrink the divisor.
    spreads = [float(np.mean([np.var(t) for t in tensors])) + 1e-6 for tensors in zip(*(
        tf.nest.flatten(teacher_taps(x, training=False))[maps:] for x in ds.take(WATCHED_BATCHES)))] if taps else []

    def distillation_loss(x, training: bool):
        targets = tf.nest.flatten(teacher_taps(x, training=False))
        outs = tf.nest.flatten(student_taps(x, training=training))
        # |target|: PAFs are signed; a heatmap's small negative ripples count for little.
        loss = tf.add_n([tf.reduce_mean((1.0 + foreground_weight * tf.abs(t)) * tf.square(o - t))
                         for o, t in zip(outs[:maps], targets[:maps])])
        if not taps:
            return loss
        features = [tf.reduce_mean(tf.square(o - t)) / spread
                    for o, t, spread in zip(outs[maps:], targets[maps:], spreads)]
        return loss + feature_weight * tf.add_n(features) / len(features)

    @tf.function(autograph=False)  # no tensor-dependent branches; conversion costs seconds
    def step(x):
        with tf.GradientTape() as tape:
            loss = distillation_loss(x, training=True)
        grads = tape.gradient(loss, student.trainable_variables)
        opt.apply_gradients(zip(grads, student.trainable_variables))
        return loss

    # Tiny batches of other data must not move the batch-norm statistics.
    with frozen_batch_norms(student):
        calibrate_ranges(student, ds.take(CALIBRATION_BATCHES))
        opt.build(student.trainable_variables)  # slots made here: `step` is then traced once, not twice
        # The calibrated copy before any step, on as many batches as the last steps are averaged over.
        before = float(np.mean([distillation_loss(x, training=False) for x in ds.take(WATCHED_BATCHES)]))
        bar = tqdm(ds.take(steps), total=steps, desc="distill QAT", disable=not progress)
        losses = []
        for x in bar:
            losses.append(float(step(x)))
            bar.set_postfix(loss=f"{losses[-1]:.2e}")
    after = float(np.mean(losses[-WATCHED_BATCHES:])) if losses else before
    if not after <= 2 * before:  # NaN included
        log.warning("distill_qat: the distillation loss rose from %.2e (the calibrated QAT copy) to %.2e "
                    "(mean of the last %d steps): training moved it away from the float model. "
                    "Fix: a lower lr (e.g. --lr %g).", before, after, WATCHED_BATCHES, lr / 10)
    config = dict(model.config)
    config.update(quantization="qat", concat_scales=scales, qat={"method": "self-distillation", "data": str(data),
                                           "steps": steps, "batch_size": batch_size, "lr": lr,
                                           "feature_weight": feature_weight, "feature_taps": len(taps),
                                           "loss_before": before, "loss_after": after})
    return PoseModel(student, config)
