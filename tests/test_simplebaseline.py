"""Simple Baselines (Xiao et al. 2018, top-down): parameter counts against the paper, the
backbones against tf_keras.applications (names, weights, in-graph normalisation), pretrained
backbone weights (imagenet, a local file, the clear failures) through kpose.train. Every
simplebaseline recipe also builds, predicts, trains a step and passes the deploy gates
with the others in tests/test_deploy.py."""
import base64
import dataclasses
import json

import numpy as np
import pytest

import kpose
from kpose._tf import keras
from kpose.data.synthetic import generate
from kpose.deploy.exporter import export
from kpose.deploy.graph import fold_batch_norms
from kpose.deploy.tfjs import TfjsRunner, web_demo_dir
from kpose.models import build_network, network_outputs
from kpose.models.backbones import BACKBONES
from kpose.models.flops import count_parameters
from kpose.models.simplebaseline import backbone_weights
from kpose.skeletons import COCO17
from kpose.training import untrained_model, untrained_networks
from kpose.training.targets import target_specs
from kpose.training.task_data import TASK_DATA
from kpose.training.trainer import make_trainer
from tf_keras.src.utils import data_utils  # where the applications' weight downloads go through

RECIPES = ("simplebaseline_resnet50", "simplebaseline_resnet18", "simplebaseline_mobilenetv2",
           "simplebaseline_mobilenetv3s")
# Tests build the networks on tiny crops (the backbones' stride is 32): their parameter count
# does not depend on the input size.
TEST_SIZE = [64, 64]
# Trainable parameters with 17 keypoints: the paper's (ResNet-50, 256x192) and the same head on
# ResNet-18 (mmpose's model zoo).
PUBLISHED_PARAMETERS = {"resnet50": 34.0e6, "resnet18": 15.4e6}


def _net(variant: str, size=TEST_SIZE):
    return build_network({"family": "simplebaseline", "variant": variant, "input_size": list(size),
                          "skeleton": COCO17.to_dict()})


def _close_to_published(net, variant: str) -> bool:
    """Within the paper's rounding (tf_keras' ResNet-50 adds convolution biases: 0.03M)."""
    published = PUBLISHED_PARAMETERS[variant]
    return abs(count_parameters(net, trainable_only=True) - published) < 0.003 * published


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipes_crop_256x192_into_64x48_heatmaps(recipe):
    cfg = kpose.load_recipe(recipe)
    assert cfg["model"]["input_size"] == [256, 192] and cfg["codec"]["sigma"] == 8.0
    (out,) = network_outputs({**cfg["model"], "skeleton": "coco17"})
    assert out.inference and [s // out.stride for s in cfg["model"]["input_size"]] == [64, 48]


def _probe(net, layer):
    return keras.Model(net.inputs, net.get_layer(layer).output)


def test_mobilenet_v3_small_is_the_applications_network():
    """Same layer names and weight shapes as tf_keras.applications.MobileNetV3Small (so its
    ImageNet file loads by name) and the same function, with hard-sigmoid as one layer."""
    ref = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), include_top=False, weights=None)
    net = _net("mobilenetv3s", (32, 32))
    ours = {l.name: [w.shape for w in l.weights] for l in net.layers if l.weights}
    theirs = {l.name: [w.shape for w in l.weights] for l in ref.layers if l.weights}
    assert {k: v for k, v in ours.items() if k in theirs} == theirs
    _randomise_batch_norms(ref)
    for layer in ref.layers:
        if layer.weights:
            net.get_layer(layer.name).set_weights(layer.get_weights())
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    want = ref(x).numpy()  # the applications' own preprocessing: x / 127.5 - 1
    got = _probe(net, "Conv_1/hard_swish")(x).numpy()
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()


def _randomise_batch_norms(model):
    """Moving statistics away from (0, 1), so a normalisation mistake shows."""
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, beta + rng.normal(0, 0.1, beta.shape), rng.normal(0, 0.1, mean.shape),
                               rng.uniform(0.5, 2.0, var.shape)])


def test_imagenet_weights_load_by_name_and_the_graph_normalises_caffe_style(monkeypatch):
    """`backbone_weights: imagenet` takes the applications model's weights layer by layer; the
    network takes RGB 0..255 and computes what ResNet-50 computes on preprocess_input (BGR,
    minus the ImageNet means). The applications model stands in for the download here."""
    ref = keras.applications.ResNet50(input_shape=(64, 64, 3), include_top=False, weights=None)
    _randomise_batch_norms(ref)
    monkeypatch.setitem(BACKBONES, "resnet50", dataclasses.replace(BACKBONES["resnet50"], imagenet=lambda: ref))
    net = _net("resnet50")
    assert _close_to_published(net, "resnet50")
    summary = backbone_weights("resnet50", "imagenet")(net)
    assert summary.startswith(f"{sum(1 for l in ref.layers if l.weights)} backbone layers from ImageNet")
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    want = ref(keras.applications.resnet50.preprocess_input(x.copy())).numpy()
    got = _probe(net, "conv5_block3_out")(x).numpy()
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()


def test_imagenet_download_is_the_applications_and_fails_clearly_offline(monkeypatch):
    asked = []

    def offline(fname, origin=None, **kwargs):
        asked.append(origin)
        raise OSError("network unreachable")

    monkeypatch.setattr(data_utils, "get_file", offline)
    with pytest.raises(FileNotFoundError, match=r"imagenet.*network unreachable.*local \.h5 weights file or to null"):
        backbone_weights("mobilenetv3s", "imagenet")
    assert asked and asked[0].startswith("https://storage.googleapis.com/tensorflow/keras-applications/")


def test_backbone_weights_fail_at_once_where_there_are_none(tmp_path):
    # ResNet-18: tf_keras.applications has no ImageNet weights; kpose.train stops before any work.
    with pytest.raises(ValueError, match=r"no ImageNet weights for simplebaseline resnet18.*or to null"):
        kpose.train("simplebaseline_resnet18", runs_dir=tmp_path, progress=False,
                    overrides={"model.backbone_weights": "imagenet"})
    with pytest.raises(FileNotFoundError, match=r"model.backbone_weights='/no/such.h5': no such file"):
        kpose.train("simplebaseline_resnet18", runs_dir=tmp_path, progress=False,
                    overrides={"model.backbone_weights": "/no/such.h5"})
    with pytest.raises(ValueError, match="efficientpose has no separate backbone"):
        kpose.train("efficientpose_rt", runs_dir=tmp_path, progress=False,
                    overrides={"model.backbone_weights": "imagenet", "init": None})
    assert not list(tmp_path.iterdir())  # no run folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sb")
    return {split: f"coco:{generate(root, n, seed=41 + n, split=split, progress=False)}:{root / split}"
            for split, n in (("train", 2), ("val", 1))}


def test_a_local_backbone_file_starts_training_offline(data, tmp_path):
    """model.backbone_weights: a .h5 file (here a MobileNetV3-Small saved by Keras) loads every
    backbone layer before a (graph-mode) training step; the run is saved, reloads and predicts.
    A file of another backbone is refused, naming the layers it lacks."""
    source = _net("mobilenetv3s")
    source.save_weights(str(tmp_path / "mv3.h5"))
    run = kpose.train("simplebaseline_mobilenetv3s", data=data, epochs=1, batch_size=2, runs_dir=tmp_path / "runs",
                      progress=False, overrides={"model.input_size": TEST_SIZE, "train.steps_per_epoch": 1,
                                                 "model.backbone_weights": str(tmp_path / "mv3.h5"),
                                                 "eval.flip_test": False})
    assert run.metrics["optimizer_steps"] == 1 and np.isfinite(run.history["loss"]).all()
    for name in ("Conv", "expanded_conv_3/expand", "Conv_1"):
        a = run.model.keras_model.get_layer(name).get_weights()[0]
        b = source.get_layer(name).get_weights()[0]
        # One Adam step (warming up) moves a weight by at most the learning rate.
        assert np.abs(a - b).max() <= 1.01e-3 and np.abs(b).max() > 0.05, name
    assert run.model.codec.heatmap_size == (16, 16) and "AP" in run.metrics
    crop = np.random.default_rng(0).integers(0, 255, (80, 60, 3), dtype=np.uint8)
    (person,) = kpose.load(run.dir).predict(crop, boxes=[[0, 0, 60, 80]])
    np.testing.assert_allclose(person.keypoints, run.model.predict(crop, boxes=[[0, 0, 60, 80]])[0].keypoints,
                               atol=1e-4)
    with pytest.raises(ValueError, match="has no weights for the resnet18 backbone's layers"):
        backbone_weights("resnet18", str(tmp_path / "mv3.h5"))(_net("resnet18"))


def test_resnet18_trains_a_step(data):
    """The recipe's network and loss on a batch of its data path (eagerly: one step traces
    nothing); every trainable layer gets a gradient."""
    overrides = {"model.input_size": TEST_SIZE}
    cfg = kpose.load_recipe("simplebaseline_resnet18", overrides)
    net, model = untrained_networks("simplebaseline_resnet18", overrides)
    assert _close_to_published(net, "resnet18")
    specs = target_specs(network_outputs({**cfg["model"], "skeleton": "coco17"}), TEST_SIZE, cfg["codec"]["sigma"],
                         cfg["codec"]["paf_width"], 17)
    task = TASK_DATA["top_down"]
    batch = next(iter(task.batches(task.load(data, "train", model.skeleton, False), TEST_SIZE, specs, cfg, 2, seed=0)))
    trainer = make_trainer(net, specs, cfg["loss"], 2)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = [w.numpy() for w in net.trainable_weights]
    assert np.isfinite(float(trainer.train_step(batch)["loss"]))
    assert all(not np.array_equal(b, w.numpy()) for b, w in zip(before, net.trainable_weights))


def test_transposed_convolution_batch_norms_fold_for_tfjs():
    """TF.js export folds each batch norm into the convolution feeding it, transposed ones too."""
    x = keras.Input((4, 4, 8))
    y = keras.layers.Conv2DTranspose(6, 4, strides=2, padding="same", use_bias=False, name="deconv")(x)
    y = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn")(y))
    net = keras.Model(x, y)
    _randomise_batch_norms(net)
    folded = fold_batch_norms(net)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in folded.layers)
    inputs = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype(np.float32)
    np.testing.assert_allclose(folded(inputs).numpy(), net(inputs).numpy(), atol=1e-5)


def test_tfjs_export_runs_hard_swish(tmp_path):
    """With trained batch norms (a bias on every convolution) the TF.js converter would fuse
    convolution + bias + hard-swish into _FusedHardSwish, which no TF.js backend has; the
    export writes hard-sigmoids in their clip form instead, computing the same."""
    model = untrained_model("simplebaseline_mobilenetv3s", {"model.input_size": [32, 32]})
    _randomise_batch_norms(model.keras_model)
    path = export(model, "tfjs", "fp32", tmp_path)
    nodes = json.loads((path / "model.json").read_text())["modelTopology"]["node"]
    fused = {base64.b64decode(op).decode() for n in nodes
             for op in n.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])}
    assert "_FusedHardSwish" not in fused and "BiasAdd" in fused
    if web_demo_dir() is not None:
        x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
        (got,) = TfjsRunner(path)(x).values()
        want = model.keras_model(x).numpy()
        assert np.abs(got - want).max() < 1e-4 * max(np.abs(want).max(), 1e-3)
