"""The training objective: per-output losses with intermediate supervision, and the LR schedule."""
from __future__ import annotations

import math
from functools import partial

from kpose._tf import keras, tf
from kpose.training.targets import TargetSpec


def squared_error(pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Per-element (pred - target)^2: the L2 loss before weighting and averaging."""
    return tf.square(pred - target)


def focal_squared_error(pred: tf.Tensor, target: tf.Tensor, gamma: float = 2.0,
                        threshold: float = 0.01) -> tf.Tensor:
    """SimplePose's focal L2 (Li et al., AAAI 2020), per element: |1 - s_t|^gamma (pred - target)^2.

    s_t = pred where the target is at least `threshold` (on a Gaussian), 1 - pred elsewhere: a
    pixel already predicted well (s_t near 1) weighs little, so the many easy background pixels
    no longer outweigh the few foreground ones. gamma 0 is the plain squared error. The absolute
    value keeps the weight defined (and >= 0) for predictions outside [0, 1]. The weight is a
    function of the prediction and is differentiated through, as in the paper's loss.
    """
    if gamma == 0:
        # The weight is 1; pow's gradient at a zero base would be 0 * inf there.
        return squared_error(pred, target)
    s_t = tf.where(target >= threshold, pred, 1.0 - pred)
    return tf.pow(tf.abs(1.0 - s_t), gamma) * tf.square(pred - target)


# Recipe loss.type -> element-wise loss (recipe loss section) -> (pred, target) -> loss; the
# names are kpose.recipe.CHOICES["loss.type"] (tests check they agree).
LOSSES = {
    "l2": lambda loss: squared_error,
    "focal_l2": lambda loss: partial(focal_squared_error, gamma=float(loss["gamma"]),
                                     threshold=float(loss["focal_threshold"])),
}


def loss_function(loss: dict):
    """The element-wise loss a recipe's `loss` section selects (loss.type)."""
    kind = loss.get("type", "l2")  # run folders written before loss.type existed trained with L2
    if kind not in LOSSES:
        raise ValueError(f"recipe loss.type={kind!r} is not a loss kpose knows; known: {', '.join(LOSSES)}; "
                         f"set loss.type in the recipe (or --set loss.type=focal_l2)")
    return LOSSES[kind](loss)


class PoseTrainer(keras.Model):
    """Wraps a multi-output network with kpose's visibility-weighted pass losses.

    Every pass is supervised (intermediate supervision). Top-down: each channel's
    squared error is weighted by its target weight (0 for unlabelled or out-of-crop
    keypoints and for limbs missing an endpoint). Bottom-up: each pixel's, by its
    weight (0 inside ignore regions). element_loss: (pred, target) -> the per-element
    error weighted so (`squared_error`, or SimplePose's `focal_squared_error`).
    """

    def __init__(self, net, specs: list[TargetSpec], pass_weights, scale: float, global_batch: int,
                 foreground_weight: float = 0.0, element_loss=squared_error):
        super().__init__()
        self.net = net
        self.element_loss = element_loss
        self.specs = specs
        self.pass_weights = [float(w) for w in pass_weights]
        if len(self.pass_weights) != len(specs):
            raise ValueError(f"recipe loss.pass_weights has {len(self.pass_weights)} entries; the "
                             f"model has {len(specs)} supervised outputs {[s.name for s in specs]}")
        self.scale = float(scale)
        self.foreground_weight = float(foreground_weight)
        self.global_batch = global_batch
        names = ["loss"] + [s.name for s in specs]
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}
        # Its variables are the built network's. Marked built, BackupAndRestore builds the
        # optimizer before restoring a backup instead of warning that the model is unbuilt.
        self.built = True

    def get_config(self):
        # The wrapper is rebuilt from the recipe, never deserialised.
        return {}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, x, training=False):
        return self.net(x, training=training)

    def _pass_losses(self, targets, weights, outputs):
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]  # a network with one supervised output (Simple Baselines)
        per_sample, parts = 0.0, {}
        for spec, out, pw in zip(self.specs, outputs, self.pass_weights):
            t, w = targets[spec.name], weights[spec.name]
            if spec.kind == "pafs" and w.shape.rank == 2:  # one weight per limb, two channels per limb
                w = tf.repeat(w, 2, axis=-1)
            sq = self.element_loss(tf.cast(out, tf.float32), t)
            if self.foreground_weight:
                # Gaussian peaks cover a tiny fraction of a map: without extra weight on
                # them a from-scratch model first learns to predict zeros everywhere and
                # sits on that plateau. Per-pixel weights keep the optimum at the target.
                sq = sq * (1.0 + self.foreground_weight * tf.abs(t))
            if w.shape.rank == 4:
                # Bottom-up: per-pixel weights [B, h, w, 1], 0 in ignore regions.
                sample = self.scale * tf.reduce_mean(sq * w, axis=[1, 2, 3])  # [B]
            else:
                # Top-down: per-channel weights [B, C], 0 for unlabelled keypoints and limbs.
                err = tf.reduce_mean(sq, axis=[1, 2])  # [B, C]
                sample = self.scale * tf.reduce_mean(err * w, axis=-1)  # [B]
            parts[spec.name] = tf.nn.compute_average_loss(sample, global_batch_size=self.global_batch)
            per_sample += pw * sample
        loss = tf.nn.compute_average_loss(per_sample, global_batch_size=self.global_batch)
        if self.net.losses:
            loss += tf.nn.scale_regularization_loss(tf.add_n(self.net.losses))
        return loss, parts

    # Traced as written, without autograph: the step branches on Python values only, and
    # converting it (and every layer and optimizer call inside) took ~7 s of each run's start.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        x, targets, weights = data
        # Mixed precision: float16 gradients underflow unless the loss is scaled up first.
        scaling = isinstance(self.optimizer, keras.mixed_precision.LossScaleOptimizer)
        with tf.GradientTape() as tape:
            outputs = self.net(x, training=True)
            loss, parts = self._pass_losses(targets, weights, outputs)
            scaled = self.optimizer.get_scaled_loss(loss) if scaling else loss
        variables = self.net.trainable_variables
        grads = tape.gradient(scaled, variables)
        if scaling:
            grads = self.optimizer.get_unscaled_gradients(grads)
        self.optimizer.apply_gradients(zip(grads, variables))
        return self._track(loss, parts)

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        x, targets, weights = data
        loss, parts = self._pass_losses(targets, weights, self.net(x, training=False))
        return self._track(loss, parts)

    def _track(self, loss, parts):
        # Trackers see per-replica shares; multiply back so logs show the batch mean.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.trackers["loss"].update_state(loss * replicas)
        for k, v in parts.items():
            self.trackers[k].update_state(v * replicas)
        return {k: m.result() for k, m in self.trackers.items()}


def make_trainer(net, specs: list[TargetSpec], loss: dict, global_batch: int) -> PoseTrainer:
    """The PoseTrainer for a recipe's `loss` section."""
    return PoseTrainer(net, specs, loss["pass_weights"], loss["scale"], global_batch,
                       loss["foreground_weight"], loss_function(loss))


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up then cosine decay to 1% of the peak rate."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak, self.warmup, self.total = float(peak), int(warmup_steps), int(total_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * (step + 1) / max(self.warmup, 1)
        progress = tf.clip_by_value((step - self.warmup) / max(self.total - self.warmup, 1), 0.0, 1.0)
        cosine = self.peak * (0.01 + 0.99 * 0.5 * (1 + tf.cos(math.pi * progress)))
        return tf.where(step < self.warmup, warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup, "total_steps": self.total}
