"""Bottom-up training: targets from all people with ignore masks, every bottom-up recipe
trains a smoke step, the model is saved, reloaded and predicts people on whole images."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kpose
from kpose import cli
from kpose._tf import keras, tf
from kpose.codecs import PafCodec
from kpose.data.synthetic import generate
from kpose.deploy import tflite
from kpose.deploy.exporter import export
from kpose.models.quantize import float_layer_names
from kpose.recipe import recipes
from kpose.skeletons import CMU18, COCO17, convert_keypoints
from kpose.training.targets import TargetSpec, encode_people_targets

BOTTOM_UP_RECIPES = ("openpose_lightweight", "openpose_mobilenet_v2", "openpose_vgg19")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bu")
    tr = generate(root, 6, seed=31, split="train", progress=False)
    va = generate(root, 3, seed=32, split="val", progress=False)
    return {"train": f"coco:{tr}:{root / 'train'}", "val": f"coco:{va}:{root / 'val'}"}


def test_people_targets_match_the_reference_codec_and_respect_the_ignore_mask():
    codec = PafCodec((64, 64), (8, 8), limbs=COCO17.limbs, sigma=1.0)
    rng = np.random.default_rng(0)
    people = np.concatenate([rng.uniform(4, 60, (3, 17, 2)), np.full((3, 17, 1), 2.0)], -1).astype(np.float32)
    ignore = np.zeros((64, 64), np.float32)
    ignore[:32, :16] = 1.0
    specs = [TargetSpec("h", "heatmaps", (8, 8), 1.0, 8, background=True), TargetSpec("p", "pafs", (8, 8), 1.0, 8)]
    t, w = encode_people_targets(tf.constant(people), tf.constant(ignore), (64, 64), specs,
                                 np.asarray(COCO17.limbs, np.int32))
    heat, _ = codec.encode_heatmaps(people)
    pafs, _ = codec.encode(people)
    np.testing.assert_allclose(t["h"].numpy()[..., :17], heat, atol=1e-5)
    np.testing.assert_allclose(t["h"].numpy()[..., 17], np.maximum(1 - heat.max(-1), 0), atol=1e-5)
    np.testing.assert_allclose(t["p"].numpy(), pafs, atol=1e-5)
    weight = w["h"].numpy()[..., 0]
    assert weight.shape == (8, 8) and np.all(weight[:4, :2] == 0) and np.all(weight[4:, :] == 1)


def test_neck_is_derived_from_the_shoulders():
    kps = np.zeros((1, 17, 3), np.float32)
    kps[0, COCO17.index("left_shoulder")] = (10, 20, 2)
    kps[0, COCO17.index("right_shoulder")] = (30, 22, 1)
    cmu = convert_keypoints(kps, COCO17, CMU18)
    np.testing.assert_allclose(cmu[0, CMU18.index("neck")], (20, 21, 1))
    np.testing.assert_allclose(cmu[0, CMU18.index("left_shoulder")], (10, 20, 2))
    kps[0, COCO17.index("right_shoulder"), 2] = 0
    assert convert_keypoints(kps, COCO17, CMU18)[0, CMU18.index("neck"), 2] == 0
    with pytest.raises(ValueError, match="neck"):
        convert_keypoints(np.zeros((17, 3)), COCO17, CMU18.__class__(
            "x", ("neck",), (), (), None, {}))


@pytest.mark.parametrize("recipe", BOTTOM_UP_RECIPES)
def test_bottom_up_recipe_trains_saves_and_predicts(recipe, data, tmp_path):
    assert recipe in recipes()
    size = [64, 64]
    run = kpose.train(recipe, data=data, epochs=1, batch_size=2, runs_dir=tmp_path,
                      overrides={"train.steps_per_epoch": 2, "model.input_size": size, "init": None},
                      progress=False)
    assert run.model.task == "bottom_up" and run.metrics["task"] == "bottom_up"
    assert np.isfinite(run.history["loss"]).all() and "AP" in run.metrics
    for name in ("model/kpose.json", "model/weights.h5", "val_predictions.png", "metrics.json"):
        assert (run.dir / name).exists(), name
    model = kpose.load(run.dir)
    assert model.task == "bottom_up" and model.config["skeleton"]["name"] == run.model.skeleton.name
    img = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    before = run.model.predict(img)
    after = model.predict(img)
    assert len(before) == len(after)
    with pytest.raises(ValueError, match="bottom-up model finds every person"):
        model.predict(img, boxes=[[0, 0, 10, 10]])


def test_tf_pose_weights_start_the_mobilenet_v2_recipe(shared, data, tmp_path):
    run = kpose.train("openpose_mobilenet_v2", data=data, epochs=0, runs_dir=tmp_path,
                      overrides={"model.input_size": [128, 128]}, progress=False)
    src = kpose.load(shared / "peers" / "tf_pose_estimation" / "openpose_mobilenet_v2_small.pb")
    a = run.model.keras_model.get_layer("stage6_heatmap1_pointwise").get_weights()[0]
    b = src.keras_model.get_layer("stage6_heatmap1_pointwise").get_weights()[0]
    np.testing.assert_array_equal(a, b)
    assert run.model.config["variant"] == "small_bn"  # the recipe's: batch norms where the release has
    # per-image ones; they take its gamma and beta, and statistics measured on training batches
    norm, src_norm = run.model.keras_model.get_layer("block3_expand_norm"), src.keras_model.get_layer("block3_expand_norm")
    gamma, beta, mean, variance = norm.get_weights()
    np.testing.assert_array_equal(gamma, src_norm.get_weights()[0])
    np.testing.assert_array_equal(beta, src_norm.get_weights()[1])
    assert np.abs(mean).max() > 0.1 and not np.allclose(variance, 1.0)
    # They are the statistics of training images: the layer's inputs on the training
    # images (in training mode: batch statistics upstream) have nearly that mean and variance.
    folder = Path(data["train"].split(":")[2])
    x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((128, 128)), np.float32)
                  for p in sorted(folder.glob("*.jpg"))[:6]])
    probe = keras.Model(run.model.keras_model.inputs, norm.input)
    inputs = probe(x, training=True).numpy().reshape(-1, mean.size)
    np.testing.assert_allclose(inputs.mean(0), mean, atol=0.3 * np.sqrt(variance).max())
    np.testing.assert_allclose(inputs.var(0), variance, rtol=0.5)


def test_real_photo_people_flip_test_and_top_down_refinement(shared):
    """tf-pose weights through kpose on a real group photo; the flip test finds the same
    people; a top-down model refines each person the bottom-up model finds."""
    from kpose.model_io import load_tf_pose
    from kpose.person_boxes import BOX_MARGIN, grown
    from kpose.training import untrained_model

    photo = shared / "peers" / "tf_pose_estimation" / "apink2.jpg"
    model = load_tf_pose(shared / "peers" / "tf_pose_estimation" / "openpose_mobilenet_v2_small.pb")
    people = [p for p in model.predict(photo) if p.score > 0.3]
    assert len(people) >= 3
    flipped = [p for p in model.predict(photo, flip_test=True) if p.score > 0.3]
    assert abs(len(flipped) - len(people)) <= 1
    top_down = untrained_model("efficientpose_rt", {"model.input_size": [64, 48]})
    refined = top_down.predict(photo, detector=model)
    found = model.predict(photo)
    assert len(refined) == len(found)
    # each crop is the person's keypoint box grown by the margin (keypoints lie inside the body)
    np.testing.assert_allclose([p.box for p in refined], grown([p.box for p in found], BOX_MARGIN))
    with pytest.raises(ValueError, match="detector must be a bottom-up model"):
        top_down.predict(photo, detector=top_down)


def test_multi_scale_maps_align_across_scales(shared):
    """Multi-scale inference: the maps of each scale are resampled onto the largest grid. Two
    equal scales reproduce single-scale inference exactly (the resampling is the identity),
    and scales 1 and 1.5 find every person scale 1 finds, at the same places, on a real group photo."""
    from kpose.model_io import load_tf_pose
    from kpose.training import untrained_model

    photo = shared / "peers" / "tf_pose_estimation" / "apink2.jpg"
    model = load_tf_pose(shared / "peers" / "tf_pose_estimation" / "openpose_mobilenet_v2_small.pb", (256, 320))
    single = model.predict(photo)
    twice = model.predict(photo, scales=[1.0, 1.0])
    assert len(twice) == len(single) >= 3
    for a, b in zip(single, twice):
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
    assert model.scaled_input_sizes([1.5, 0.5]) == [(384, 480), (128, 160)]

    multi = [p for p in model.predict(photo, scales=[1.0, 1.5]) if p.score > 0.3]
    people = [p for p in single if p.score > 0.3]
    assert len(multi) >= len(people)  # the larger scale finds people too small at 256x320
    diag = float(np.hypot(*np.asarray(Image.open(photo).size)))
    for person in people:
        dists = []
        for other in multi:
            both = (person.keypoints[:, 2] > 0) & (other.keypoints[:, 2] > 0)
            if both.sum() >= 3:
                dists.append(np.median(np.linalg.norm(person.keypoints[both, :2] - other.keypoints[both, :2], axis=1)))
        assert dists and min(dists) < 0.02 * diag

    with pytest.raises(ValueError, match="positive"):
        model.predict(photo, scales=[0.0, 1.0])
    top_down = untrained_model("efficientpose_rt", {"model.input_size": [64, 48]})
    with pytest.raises(ValueError, match="scales are for bottom-up"):
        top_down.predict(photo, scales=[1.0])


def test_each_validation_during_training_scores_that_epochs_weights_at_every_scale(tmp_path):
    """Multi-scale inference rebuilds the network at the other input sizes with a copy of the
    weights; validation during training must score each epoch's weights at every scale (it
    scored the first validation's at the scales other than 1 before this was mended)."""
    from kpose.pose_model import PoseModel
    from kpose.training.recipe_model import untrained_networks
    from kpose.training.validation import EvalCallback

    net, model = untrained_networks("openpose_mobilenet_v2", {"model.input_size": [64, 64]})
    image = np.random.default_rng(0).uniform(0, 255, (64, 64, 3)).astype(np.uint8)
    seen = []

    def evaluate(m, results_file):
        seen.append(m._maps_at(image, (96, 96), flip_test=False)[0])  # the network rebuilt at scale 1.5
        results_file.write_text("[]")
        return {"AP": float(len(seen))}

    callback = EvalCallback(model, evaluate, every=1, ckpt_dir=tmp_path, key="AP", network=net, total_epochs=2)
    callback.on_epoch_end(0)
    net.set_weights([w + np.float32(0.01) for w in net.get_weights()])  # an epoch of "training"
    callback.on_epoch_end(1)
    fresh = PoseModel(model.keras_model, model.config)._maps_at(image, (96, 96), flip_test=False)[0]
    assert np.abs(seen[1] - seen[0]).max() > 1e-3
    np.testing.assert_allclose(seen[1], fresh, atol=1e-5)


def test_label_free_qat_of_a_bottom_up_model(shared, data, tmp_path, capsys, caplog):  # shared: the tf-pose release
    # Label-free QAT on whole images: the QAT copy of the tf-pose release (int8 form) learns
    # the float model's heatmaps and PAFs (how it is quantised for real photos, where
    # labelled ones are few).
    run = kpose.train("openpose_mobilenet_v2", data=data, epochs=0, runs_dir=tmp_path, progress=False,
                      overrides={"model.input_size": [64, 64], "model.variant": "small_bn_int8"})
    # kpose quantize: distill_qat from the command line, a QAT model folder out.
    with caplog.at_level("WARNING", logger="kpose.training.distill"):
        assert cli.main(["quantize", str(run.dir), "--data", data["train"], "--steps", "10", "--batch-size", "2",
                         "--out", str(tmp_path / "distilled")]) == 0
    # At the default lr the copy stays near the float model: no warning (a wrecked one warns:
    # test_deploy.py::test_distill_qat_says_when_training_wrecks_the_copy). 10 steps: the loss
    # after is a mean over as many batches as the loss before (4 steps of 2 tiny images rose
    # 2-3x by batch noise alone on some seeds, maps-only as with the feature term).
    assert "Fix: a lower lr" not in caplog.text, caplog.text
    distilled = kpose.load(tmp_path / "distilled")
    assert distilled.task == "bottom_up" and distilled.config["quantization"] == "qat"
    assert distilled.config["qat"]["method"] == "self-distillation"
    qat = distilled.config["qat"]
    assert 0 < qat["loss_before"] and 0 < qat["loss_after"] <= 2 * qat["loss_before"], qat
    assert float_layer_names(distilled.keras_model) == []
    # Both outputs are fake-quantised copies of the float ones (their effect on real photos,
    # AP 0.099 after post-training int8 -> 0.119, float 0.139 (2026-12-08), is measured by
    # benchmarks/distill_qat_bottom_up.py: docs/results.md).
    shapes = [tuple(o.shape) for o in run.model.keras_model.outputs]
    assert [tuple(o.shape) for o in distilled.keras_model.outputs] == shapes and len(shapes) == 2
    path = export(distilled, "tflite", "qat", tmp_path)
    assert tflite.float_ops(path) == []
    # A QAT model is not quantised again: one line naming the fix, exit 1.
    assert cli.main(["quantize", str(tmp_path / "distilled"), "--data", data["train"]]) == 1
    assert "already quantisation-aware" in capsys.readouterr().err
