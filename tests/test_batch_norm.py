"""Batch-norm statistics measured on data (kpose.models.batch_norm)."""
import numpy as np
import pytest

from kpose._tf import keras
from kpose.models.batch_norm import calibrate_batch_norms


def _net():
    x = inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 1, use_bias=False, name="c1")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-3, name="bn1")(x)
    x = keras.layers.Conv2D(5, 1, use_bias=False, name="c2")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-3, name="bn2")(x)
    x = keras.layers.Conv2D(2, 1, use_bias=False, name="c3")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-3, name="bn3")(x)
    net = keras.Model(inputs, x)
    rng = np.random.default_rng(0)
    for name in ("bn1", "bn2"):  # gamma, beta that are not the identity
        layer = net.get_layer(name)
        c = layer.get_weights()[0].shape[0]
        layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(0, 1, c), np.zeros(c), np.ones(c)])
    return net


def _stats(values):
    flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
    return flat.mean(0), flat.var(0)


def test_moving_statistics_are_the_pooled_statistics_of_the_inputs():
    net = _net()
    rng = np.random.default_rng(1)
    batches = [rng.normal(3, 2, (4, 6, 6, 3)).astype(np.float32) for _ in range(3)]
    bn3_before = net.get_layer("bn3").get_weights()
    assert calibrate_batch_norms(net, [(b, None) for b in batches], ["bn1", "bn2"]) == 3

    # The reference in NumPy: 1x1 convolutions are matrix products; bn1 normalises each
    # batch by that batch's statistics (training mode), as the network does in training.
    k1 = net.get_layer("c1").get_weights()[0][0, 0]
    k2 = net.get_layer("c2").get_weights()[0][0, 0]
    gamma, beta = net.get_layer("bn1").get_weights()[:2]
    h1 = [b @ k1 for b in batches]
    h2 = []
    for h in h1:
        m, v = _stats(h)
        h2.append(((h - m) / np.sqrt(v + 1e-3) * gamma + beta) @ k2)
    for name, values in (("bn1", h1), ("bn2", h2)):
        mean, variance = _stats(np.concatenate(values))
        got_mean, got_variance = net.get_layer(name).get_weights()[2:]
        np.testing.assert_allclose(got_mean, mean, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got_variance, variance, rtol=1e-3)
    for got, want in zip(net.get_layer("bn3").get_weights(), bn3_before):
        np.testing.assert_array_equal(got, want)  # not listed: training mode's updates undone


def test_refuses_layers_that_are_not_batch_norms_and_empty_data():
    net = _net()
    with pytest.raises(TypeError, match="'c1' is a Conv2D"):
        calibrate_batch_norms(net, [np.zeros((1, 6, 6, 3), np.float32)], ["c1"])
    with pytest.raises(ValueError, match="no batches"):
        calibrate_batch_norms(net, [], ["bn1"])
    assert calibrate_batch_norms(net, [], []) == 0


def test_qat_with_frozen_batch_norms_trains_on_the_moving_statistics(tmp_path):
    from kpose.models.quantize import frozen_batch_norms, quantize_model

    net = _net()
    x = np.random.default_rng(1).normal(2, 3, (8, 6, 6, 3)).astype(np.float32)
    qnet = quantize_model(net)
    moving = [w.numpy().copy() for w in qnet.weights if "moving_mean" in w.name]
    assert moving, "the QAT copy keeps its batch norms' statistics"
    with frozen_batch_norms(qnet) as frozen:
        assert len(frozen) == 3
        # training=True computes what inference computes: no batch statistics, no update
        np.testing.assert_allclose(qnet(x, training=True), qnet(x, training=False), atol=1e-5)
        qnet.compile(optimizer="sgd", loss="mse")
        qnet.fit(x, np.zeros_like(qnet(x)), epochs=1, batch_size=4, verbose=0)
    for before, w in zip(moving, [w for w in qnet.weights if "moving_mean" in w.name]):
        np.testing.assert_array_equal(before, w.numpy())
    assert all(layer.trainable for layer in frozen)
    # Without freezing, the same step moves them (the test can fail).
    qnet.compile(optimizer="sgd", loss="mse")
    qnet.fit(x, np.zeros_like(qnet(x)), epochs=1, batch_size=4, verbose=0)
    assert any(not np.array_equal(b, w.numpy())
               for b, w in zip(moving, [w for w in qnet.weights if "moving_mean" in w.name]))
    qnet.save(tmp_path / "qat.h5")  # saving works once they are trainable again
