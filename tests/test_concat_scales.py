"""Concatenations of inputs with very different ranges, rescaled for int8
(kpose.models.concat_scales): the float function unchanged, the int8 one closer to it."""
import numpy as np

import kpose
from kpose._tf import keras
from kpose.deploy import graph, tflite
from kpose.deploy.runtime import load_exported
from kpose.models.concat_scales import ScaledConcatenate, concat_scales, with_concat_scales
from kpose.models.quantize import calibrate_ranges, quantize_model

WIDE = 64.0


def _two_range_net() -> keras.Model:
    """A narrow branch and a 64x wider one, concatenated and read by a convolution and a
    depthwise convolution that weigh both alike; the output concatenation is left alone."""
    x = keras.Input((8, 8, 3))
    narrow = keras.layers.Conv2D(4, 1, name="narrow")(x)
    wide = keras.layers.Conv2D(4, 1, name="wide")(x)
    cat = keras.layers.Concatenate(name="cat")([narrow, wide])
    conv = keras.layers.Conv2D(4, 3, padding="same", name="conv")(cat)
    depthwise = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(cat)
    net = keras.Model(x, keras.layers.Concatenate(name="out")([conv, depthwise]))
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(1, 1, 3, 4)).astype(np.float32)
    net.get_layer("narrow").set_weights([kernel, np.zeros(4, np.float32)])
    net.get_layer("wide").set_weights([WIDE * kernel[..., ::-1], np.zeros(4, np.float32)])
    rows = np.concatenate([np.ones(4), np.full(4, 1 / WIDE)]).astype(np.float32)
    conv_kernel = rng.normal(size=(3, 3, 8, 4)).astype(np.float32) * rows[None, None, :, None]
    net.get_layer("conv").set_weights([conv_kernel, np.zeros(4, np.float32)])
    dw_kernel = rng.normal(size=(3, 3, 8, 1)).astype(np.float32) * rows[None, None, :, None]
    net.get_layer("depthwise").set_weights([dw_kernel, np.zeros(8, np.float32)])
    return net


def _inputs(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 8, 8, 3)).astype(np.float32)


def test_scales_bring_each_input_within_twice_the_narrowest_and_keep_the_float_function():
    net = _two_range_net()
    scales = concat_scales(net, _inputs(16))
    # The wide input by 1/64 (a power of two); the output concatenation is never rescaled.
    assert scales == {"cat": [1.0, 1 / WIDE]}, scales
    scaled = with_concat_scales(net, scales)
    assert isinstance(scaled.get_layer("cat"), ScaledConcatenate)
    x = _inputs(4, seed=2)
    # Powers of two: the same products, so the same outputs.
    np.testing.assert_allclose(scaled(x).numpy(), net(x).numpy(), rtol=1e-6, atol=1e-6)
    assert with_concat_scales(net, {}) is net
    # An input that is 0 on every sample sets no scale (it would shrink the others to nothing).
    net.get_layer("narrow").set_weights([np.zeros((1, 1, 3, 4), np.float32), np.zeros(4, np.float32)])
    assert concat_scales(net, _inputs(16)) == {}
    assert concat_scales(scaled, _inputs(16)) == {}  # the copy has nothing left to rescale


def _int8_error(net: keras.Model, precision: str, reference: keras.Model) -> float:
    """RMS difference of `net`'s int8 file's output from the float `reference`'s, per output std."""
    data = tflite.convert(graph.serving_function(net, (8, 8)), precision,
                          _inputs(32) if precision == "int8" else None)
    x = _inputs(8, seed=3)
    got = tflite.TFLiteRunner(data)(x)[graph.OUTPUT_NAME]
    ref = reference(x).numpy()
    return float(np.sqrt(np.mean((got - ref) ** 2)) / np.std(ref))


def test_int8_keeps_the_narrow_input_on_its_own_grid_post_training_and_after_qat():
    net = _two_range_net()
    scales = concat_scales(net, _inputs(16))
    plain = _int8_error(net, "int8", net)
    scaled = _int8_error(with_concat_scales(net, scales), "int8", net)
    # On the shared grid the narrow input has a handful of levels; on its own, 255.
    assert scaled < plain / 3, (plain, scaled)

    qat = {}
    for label, s in (("plain", {}), ("scaled", scales)):
        copy = quantize_model(net, s)
        calibrate_ranges(copy, [_inputs(8, seed=k) for k in range(4)])
        qat[label] = _int8_error(copy, "qat", net)
    assert qat["scaled"] < qat["plain"] / 3, qat


def test_an_official_model_records_its_scales_and_reloads_with_them(shared, tmp_path):
    # EfficientPose feeds each detection pass the backbone's features (|x| up to ~30) beside
    # the previous pass (|x| < 2): the features are scaled down, and a QAT copy records the
    # factors so that loading rebuilds the same network.
    from kpose.training.distill import distill_qat

    model = kpose.load(shared / "peers" / "efficientpose" / "EfficientPoseRT_LITE.h5")
    coco = shared / "data" / "coco_mini"
    data = f"coco:{coco}/annotations/person_keypoints_train2017.json:{coco}/train2017"
    qat = distill_qat(model, data, steps=2, batch_size=2, progress=False)
    scales = qat.config["concat_scales"]
    assert set(scales) == {"concatenate_1", "concatenate_2"}, scales
    assert all(s[0] == 1.0 and s[1] < 1 / 8 for s in scales.values()), scales
    qat.save(tmp_path / "qat")
    loaded = kpose.load(tmp_path / "qat")
    assert isinstance(loaded.keras_model.get_layer("quant_concatenate_1").layer, ScaledConcatenate)
    x = np.random.default_rng(0).uniform(0, 255, (2, *model.input_size, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.keras_model(x).numpy(), qat.keras_model(x).numpy(), atol=1e-5)
    # The int8 file keeps the pass outputs on their own grid: every concatenation's scale is
    # far finer than the features' range would give (0.16 without the scales).
    path = kpose.export(loaded, "tflite", "qat", tmp_path)
    assert load_exported(path).codec is not None
    assert max(tflite.concatenation_scales(path)) < 0.05, tflite.concatenation_scales(path)
