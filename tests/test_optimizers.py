"""FusedAdam: Keras's Adam in one fused kernel per variable, to float rounding and checkpoint."""
import numpy as np
import pytest

from kpose._tf import keras, tf
from kpose.training.optimizers import FusedAdam, make_optimizer
from kpose.training.trainer import WarmupCosine

SHAPES = [(3, 3, 4, 8), (8,), (5,)]


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    init = [rng.normal(0, 1, s).astype(np.float32) for s in SHAPES]
    # Gradients from 1 down to 1e-8 in one tensor: Adam divides by their own size.
    grads = [[(rng.normal(0, 1, s) * 10.0 ** rng.integers(-8, 1, s)).astype(np.float32) for s in SHAPES]
             for _ in range(6)]
    return init, grads


def _run(opt, init, grads, graph: bool):
    variables = [tf.Variable(w) for w in init]

    def step(g):
        opt.apply_gradients(zip(g, variables))
    step = tf.function(step) if graph else step
    for g in grads:
        step([tf.constant(x) for x in g])
    return variables


@pytest.mark.parametrize("graph", [True, False])
def test_fused_adam_is_keras_adam(graph):
    init, grads = _problem()
    # A schedule (the rate changes every step) and the bias corrections of the first steps.
    schedule = lambda: WarmupCosine(1e-2, 2, 6)  # noqa: E731
    theirs = _run(keras.optimizers.Adam(schedule()), init, grads, graph)
    mine = _run(FusedAdam(schedule()), init, grads, graph)
    for a, b, w in zip(mine, theirs, init):
        assert np.abs(a.numpy() - w).max() > 1e-3  # they moved
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


def test_fused_adam_resumes_a_keras_adam_checkpoint(tmp_path):
    init, grads = _problem(1)
    keras_vars = _run(keras_opt := keras.optimizers.Adam(1e-2), init, grads[:3], graph=True)
    path = tf.train.Checkpoint(opt=keras_opt, v=keras_vars).write(str(tmp_path / "ckpt"))
    fused = FusedAdam(1e-2)
    variables = [tf.Variable(np.zeros_like(w)) for w in init]
    fused.build(variables)
    tf.train.Checkpoint(opt=fused, v=variables).read(path).assert_consumed()
    assert int(fused.iterations.numpy()) == 3
    step = tf.function(lambda g: keras_opt.apply_gradients(zip(g, keras_vars)))
    fused_step = tf.function(lambda g: fused.apply_gradients(zip(g, variables)))
    for g in grads[3:]:
        step([tf.constant(x) for x in g])
        fused_step([tf.constant(x) for x in g])
    for a, b in zip(variables, keras_vars):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


def test_recipe_optimizers():
    assert type(make_optimizer("adam", 1e-3)) is FusedAdam
    assert isinstance(make_optimizer("adamw", 1e-3, 1e-4), keras.optimizers.AdamW)
    with pytest.raises(ValueError, match="train.optimizer='sgd'; known: adam, adamw"):
        make_optimizer("sgd", 1e-3)
