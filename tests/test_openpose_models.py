"""OpenPose builders (CMU VGG-19, Lightweight) and the parameter / multiply-add counter."""
from __future__ import annotations

import numpy as np
import pytest

from kpose._tf import keras, tf
from kpose.models.efficientpose import build_efficientpose
from kpose.models.flops import count_flops, count_parameters, flops_by_layer
from kpose.models.openpose import (
    build_openpose_lightweight,
    build_openpose_vgg19,
    openpose_lightweight_outputs,
    openpose_vgg19_outputs,
)

K, L = 5, 4  # small heads for the run tests: 5 heatmaps, 8 PAF channels


def _image(batch: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (batch, h, w, 3)).astype(np.float32)


def _check_against_specs(model, specs, h: int, w: int) -> None:
    assert list(model.output_names) == [s.name for s in specs]
    ys = model(_image(1, h, w), training=False)
    ys = ys if isinstance(ys, (list, tuple)) else [ys]
    for spec, static, y in zip(specs, model.outputs, ys):
        assert spec.kind in ("heatmaps", "pafs") and spec.stride == 8
        assert static.shape[-1] == spec.channels
        assert tuple(y.shape) == (1, h // spec.stride, w // spec.stride, spec.channels), spec.name
        assert np.all(np.isfinite(y.numpy()))


# --- declared outputs ----------------------------------------------------------------

def test_declared_outputs():
    light = openpose_lightweight_outputs("default", 18, 19)
    assert [s.name for s in light] == ["stage1_heatmaps", "stage1_pafs", "heatmaps", "pafs"]
    assert [s.channels for s in light] == [18, 38, 18, 38]
    assert [s.inference for s in light] == [False, False, True, True]
    vgg = openpose_vgg19_outputs("default", 19, 19)
    stages = [n for i in range(1, 6) for n in (f"stage{i}_heatmaps", f"stage{i}_pafs")]
    assert [s.name for s in vgg] == stages + ["heatmaps", "pafs"]
    assert [s.kind for s in vgg] == ["heatmaps", "pafs"] * 6
    assert all(s.stride == 8 for s in vgg) and [s.inference for s in vgg].count(True) == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="variant 'huge'"):
        build_openpose_lightweight("huge")
    with pytest.raises(ValueError, match="input_size.*multiple of 8"):
        build_openpose_lightweight(input_size=100)
    with pytest.raises(ValueError, match="num_limbs"):
        openpose_vgg19_outputs("default", 19, 0)


# --- Lightweight OpenPose ------------------------------------------------------------

@pytest.mark.parametrize("training_outputs", [False, True])
def test_lightweight_builds_and_runs(training_outputs):
    model = build_openpose_lightweight(num_keypoints=K, num_limbs=L, input_size=64,
                                       training_outputs=training_outputs)
    specs = [s for s in openpose_lightweight_outputs("default", K, L) if training_outputs or s.inference]
    _check_against_specs(model, specs, 64, 64)
    norm = model.get_layer("input_normalization")
    assert not norm.trainable
    # (x - 128) / 256, the authors' normalisation.
    np.testing.assert_allclose(norm(np.array([[[[0.0, 128.0, 255.0]]]], np.float32)).numpy(),
                               [[[[-0.5, 0.0, 127 / 256]]]], atol=1e-6)


def test_lightweight_any_size_input():
    model = build_openpose_lightweight(num_keypoints=K, num_limbs=L, input_size=None)
    specs = [s for s in openpose_lightweight_outputs("default", K, L) if s.inference]
    _check_against_specs(model, specs, 48, 80)


def test_lightweight_matches_paper_size_and_cost():
    # Osokin 2018: 4.1M parameters, 9 GFLOPs at 368x368 with 19 heatmaps + 38 PAFs; its
    # per-part table (3.7 dilated MobileNet, 1.3 initial, 3.4 refinement stage) shows
    # these are multiply-adds. Built at full size but never run.
    model = build_openpose_lightweight(num_keypoints=19, num_limbs=19, input_size=368)
    assert abs(count_parameters(model) / 4.1e6 - 1) < 0.03
    macs = count_flops(model)
    assert abs(macs / 9e9 - 1) < 0.03
    parts = flops_by_layer(model)
    backbone = sum(v for k, v in parts.items() if k.startswith("conv"))
    initial = sum(v for k, v in parts.items() if k.startswith("stage1_"))
    refinement = sum(v for k, v in parts.items() if k.startswith("stage2_") or k in ("heatmaps", "pafs"))
    assert abs(backbone / 3.7e9 - 1) < 0.03
    assert abs(initial / 1.3e9 - 1) < 0.03
    assert abs(refinement / 3.4e9 - 1) < 0.03
    # A model for any size counts the same at 368x368.
    anysize = build_openpose_lightweight(num_keypoints=19, num_limbs=19, input_size=None)
    assert count_flops(anysize, (368, 368)) == macs


def test_lightweight_one_training_step_changes_weights():
    tf.random.set_seed(0)
    model = build_openpose_lightweight(num_keypoints=K, num_limbs=L, input_size=64, training_outputs=True)
    watched = ["conv1", "conv5_1_dw", "cpm_conv", "stage1_trunk1", "stage2_block5_trunk2", "heatmaps", "pafs"]
    before = {n: [w.numpy().copy() for w in model.get_layer(n).trainable_weights] for n in watched}
    norm_before = [w.copy() for w in model.get_layer("input_normalization").get_weights()]
    x = _image(2, 64, 64)
    targets = [np.full((2,) + tuple(o.shape[1:]), 0.5, np.float32) for o in model.outputs]
    optimizer = keras.optimizers.SGD(0.01)
    with tf.GradientTape() as tape:
        ys = model(x, training=True)
        loss = tf.add_n([tf.reduce_mean(tf.square(y - t)) for y, t in zip(ys, targets)])
    grads = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None for g in grads)
    optimizer.apply_gradients(zip(grads, model.trainable_weights))
    assert np.isfinite(loss.numpy())
    for n in watched:
        after = model.get_layer(n).trainable_weights
        assert any(not np.array_equal(b, a.numpy()) for b, a in zip(before[n], after)), n
    for b, a in zip(norm_before, model.get_layer("input_normalization").get_weights()):
        np.testing.assert_array_equal(a, b)


# --- CMU OpenPose (VGG-19) -----------------------------------------------------------

@pytest.fixture(scope="module")
def vgg19_coco():
    """The COCO configuration (19 heatmaps incl. background, 19 limbs), any input size."""
    return build_openpose_vgg19(num_keypoints=19, num_limbs=19, input_size=None, training_outputs=True)


def test_vgg19_parameter_count(vgg19_coco):
    # pose_deploy_linevec.prototxt / pose_iter_440000.caffemodel: 52,311,446 weights
    # (conv1_1..conv4_2, conv4_3_CPM, conv4_4_CPM, 6 stages x 2 branches); kpose adds
    # the 6 of the frozen input normalisation.
    assert count_parameters(vgg19_coco) == 52_311_446 + 6
    assert count_parameters(vgg19_coco, trainable_only=True) == 52_311_446
    assert vgg19_coco.get_layer("concat_stage6").output.shape[-1] == 38 + 19 + 128


def test_vgg19_runs_with_training_outputs(vgg19_coco):
    _check_against_specs(vgg19_coco, openpose_vgg19_outputs("default", 19, 19), 64, 64)


def test_vgg19_inference_outputs_fixed_size():
    model = build_openpose_vgg19(num_keypoints=K, num_limbs=L, input_size=(64, 48))
    specs = [s for s in openpose_vgg19_outputs("default", K, L) if s.inference]
    assert [tuple(o.shape) for o in model.outputs] == [(None, 8, 6, K), (None, 8, 6, 2 * L)]
    _check_against_specs(model, specs, 64, 48)


# --- the counter ---------------------------------------------------------------------

def test_flop_rules_per_layer_type():
    x = inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="strided")(x)          # 16x16 out
    x = keras.layers.Conv2D(8, 3, dilation_rate=2, padding="same", name="dilated")(x)
    x = keras.layers.DepthwiseConv2D(5, padding="same", depth_multiplier=2, name="dw")(x)
    x = keras.layers.SeparableConv2D(4, 3, padding="same", name="sep")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2DTranspose(6, 4, strides=2, padding="same", name="up")(x)      # 32x32 out
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(10, name="fc")(x)
    model = keras.Model(inputs, x)
    got = flops_by_layer(model, (32, 32))
    assert got == {
        "strided": 16 * 16 * 3 * 3 * 3 * 8,
        "dilated": 16 * 16 * 3 * 3 * 8 * 8,
        "dw": 16 * 16 * 5 * 5 * 8 * 2,
        "sep": 16 * 16 * (3 * 3 * 16 + 16 * 4),
        "up": 16 * 16 * 4 * 4 * 4 * 6,
        "fc": 6 * 10,
    }
    assert count_flops(model, 32) == sum(got.values())
    with pytest.raises(ValueError, match="input_size"):
        count_flops(model)


def test_flop_counter_refuses_unmodelled_layers():
    inputs = keras.Input((7, 3))
    model = keras.Model(inputs, keras.layers.LSTM(4, name="lstm")(inputs))
    with pytest.raises(ValueError, match="'lstm'.*not modelled"):
        count_flops(model)


def test_efficientpose_rt_cost():
    # Groos et al. report 0.46M parameters and 0.87 GFLOPs at 224x224. Their FLOPs are
    # TensorFlow-profiler FLOPs (a multiply and an add counted apart, plus element-wise
    # ops): twice the multiply-adds counted here is within 3% of it.
    model = build_efficientpose("rt", num_keypoints=16, input_size=224)
    assert abs(count_parameters(model) / 0.46e6 - 1) < 0.03
    assert abs(2 * count_flops(model) / 0.87e9 - 1) < 0.03
