"""The optimizers kpose trains with: Keras's Adam with a fused update, and AdamW."""
from __future__ import annotations

from kpose._tf import keras, tf


class _StepCoefficients:
    """One step's learning rate and bias corrections, per dtype (a plain object: the optimizer
    does not track it, so checkpoints stay Keras's)."""

    def __init__(self):
        self.by_dtype = {}


class FusedAdam(keras.optimizers.Adam):
    """Keras's Adam, each variable updated by one fused kernel (ResourceApplyAdam, TF's own Adam
    op), with the step's learning rate and bias corrections computed once per step.

    The same slots (checkpoints and backups are Keras Adam's) and the same arithmetic, to float
    rounding (tests/test_optimizers.py). Keras writes each update as ~15 graph ops and
    recomputes the step's coefficients for every variable: tracing and first running a training
    step took about twice as long (benchmarks/setup_costs.py). Sparse gradients, amsgrad and
    adaptive_epsilon take Keras's path.
    """

    def apply_gradients(self, grads_and_vars, *args, **kwargs):
        # Read at the first variable's update, after Keras has set this step's scheduled rate.
        self._coefficients = _StepCoefficients()
        return super().apply_gradients(grads_and_vars, *args, **kwargs)

    def update_step(self, gradient, variable):
        if isinstance(gradient, tf.IndexedSlices) or self.amsgrad or self.adaptive_epsilon:
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        if dtype not in self._coefficients.by_dtype:
            step = tf.cast(self.iterations + 1, dtype)
            self._coefficients.by_dtype[dtype] = (
                tf.cast(self.learning_rate, dtype), tf.pow(tf.cast(self.beta_1, dtype), step),
                tf.pow(tf.cast(self.beta_2, dtype), step))
        lr, beta_1_power, beta_2_power = self._coefficients.by_dtype[dtype]
        index = self._index_dict[self._var_key(variable)]
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle, v=self._velocities[index].handle,
            beta1_power=beta_1_power, beta2_power=beta_2_power, lr=lr, beta1=tf.cast(self.beta_1, dtype),
            beta2=tf.cast(self.beta_2, dtype), epsilon=tf.cast(self.epsilon, dtype), grad=gradient)


OPTIMIZERS = ("adam", "adamw")


def make_optimizer(name: str, lr, weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
    """The optimizer a recipe's train.optimizer names, at learning rate (or schedule) `lr`."""
    if name == "adam":
        return FusedAdam(lr)
    if name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=weight_decay)
    raise ValueError(f"recipe train.optimizer={name!r}; known: {', '.join(OPTIMIZERS)}")
