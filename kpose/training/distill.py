"""Label-free quantisation-aware training: a QAT copy learns a float model's own heatmaps."""
from __future__ import annotations

from tqdm import tqdm

from kpose._tf import keras, tf
from kpose.data.pipeline import augmented_crops
from kpose.data.sources import load_instances
from kpose.models import TOP_DOWN
from kpose.models.quantize import CALIBRATION_BATCHES, calibrate_ranges, frozen_batch_norms, quantize_model
from kpose.pose_model import PoseModel
from kpose.recipe import DEFAULTS


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
    if model.task != TOP_DOWN:
        raise ValueError("distill_qat distils heatmaps of person crops: it is for top-down models")
    teacher = model.keras_model
    student = quantize_model(teacher)
    instances = load_instances(data, "train", progress=False)
    aug = dict(DEFAULTS["augment"], **(augment or {}))
    ds = augmented_crops(instances, model.input_size, aug, seed=seed).batch(batch_size, drop_remainder=True)
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

    # Tiny batches of other data must not move the batch-norm statistics.
    with frozen_batch_norms(student):
        calibrate_ranges(student, (x for x, _ in ds.take(CALIBRATION_BATCHES)))
        bar = tqdm(ds.take(steps), total=steps, desc="distill QAT", disable=not progress)
        for x, _ in bar:
            bar.set_postfix(loss=f"{float(step(x)):.2e}")
    config = dict(model.config)
    config.update(quantization="qat", qat={"method": "self-distillation", "data": str(data),
                                           "steps": steps, "batch_size": batch_size, "lr": lr})
    return PoseModel(student, config)
