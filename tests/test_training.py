"""Two-step training smoke run through the public API, the run folder, and reloading."""
import json

import numpy as np
from PIL import Image
import pytest

import kpose
from kpose.data.synthetic import generate

from conftest import no_official_init


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    tr = generate(root, 10, seed=11, split="train", progress=False)
    va = generate(root, 5, seed=12, split="val", progress=False)
    data = {"train": f"coco:{tr}:{root / 'train'}", "val": f"coco:{va}:{root / 'val'}"}
    # Seeded random weights (not the official ones, which depend on ../shared being there);
    # two epochs of one step, so that the best checkpoint and the last may differ.
    return kpose.train("efficientpose_rt", data=data, epochs=2, batch_size=4,
                       overrides={"train.steps_per_epoch": 1, "train.eval_every": 1,
                                  "model.input_size": [64, 64], "init": None},
                       runs_dir=root / "runs", progress=False)


def test_run_folder_has_everything(run):
    for name in ("recipe.yaml", "metrics.json", "history.csv", "validation.csv", "loss.png",
                 "val_predictions.png",
                 "val_predictions.json", "model/kpose.json", "model/weights.h5",
                 "checkpoints/last.weights.h5", "checkpoints/best.weights.h5"):
        assert (run.dir / name).exists(), name
    assert any((run.dir / "tensorboard").rglob("events.out.tfevents*"))
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert {"AP", "AP50", "AR", "train_seconds"} <= set(metrics)
    results = json.loads((run.dir / "val_predictions.json").read_text())
    assert results and len(results[0]["keypoints"]) == 17 * 3
    # The run's metrics are those of the saved model on the validation split.
    data = kpose.load(run.dir).config["data"]
    again = kpose.evaluate(run.dir, data=data, progress=False)
    assert again["AP"] == pytest.approx(metrics["AP"], abs=1e-9) and again["AR"] == pytest.approx(metrics["AR"])


def test_saved_model_and_training_heads_come_from_the_best_checkpoint(run):
    """One checkpoint layout: best/last.weights.h5 hold the training network, and the model
    with its training_heads.npz is the best checkpoint, all heads from the same epoch."""
    import csv

    from kpose.models import build_network
    from kpose.training.transfer import TRAINING_HEADS_FILE

    def layers(path):
        net = build_network(run.model.config, training_outputs=True)
        net.load_weights(str(path))
        return {l.name: l.get_weights() for l in net.layers if l.get_weights()}

    best, last = layers(run.dir / "checkpoints/best.weights.h5"), layers(run.dir / "checkpoints/last.weights.h5")
    heads = np.load(run.dir / "model" / TRAINING_HEADS_FILE)
    model = kpose.load(run.dir).keras_model
    for name, weights in best.items():
        saved = ([heads[f"{name}/{i}"] for i in range(len(weights))] if f"{name}/0" in heads.files
                 else model.get_layer(name).get_weights())
        for a, b in zip(weights, saved):
            np.testing.assert_array_equal(a, b, err_msg=name)
    rows = list(csv.DictReader((run.dir / "validation.csv").open()))
    assert len(rows) == 2
    if max(float(r["AP"]) for r in rows) == float(rows[0]["AP"]):
        # AP did not rise in epoch 2: the best is epoch 1 and the last differs from it.
        assert any(not np.array_equal(a, b) for n in best for a, b in zip(best[n], last[n]))


def test_reloaded_model_predicts_the_same(run):
    img = next((run.dir.parent.parent / "val").glob("*.jpg"))
    model = kpose.load(run.dir)
    assert model.config["input"]["range"] == [0, 255] and model.skeleton.name == "coco17"
    a, b = run.model.predict(str(img)), model.predict(str(img))
    np.testing.assert_allclose(a[0].keypoints, b[0].keypoints, atol=1e-4)
    assert a[0].keypoints.shape == (17, 3)
    boxes = [[10, 10, 60, 120], [100, 40, 50, 100]]
    assert len(model.predict(str(img), boxes=boxes)) == 2
    # Without boxes the whole image is the box; a padding given is honoured, not replaced.
    h, w = np.asarray(Image.open(img)).shape[:2]
    whole = [[0, 0, w, h]]
    np.testing.assert_allclose(model.predict(str(img))[0].keypoints,
                               model.predict(str(img), boxes=whole, padding=1.0)[0].keypoints, atol=1e-4)
    np.testing.assert_allclose(model.predict(str(img), padding=1.6)[0].keypoints,
                               model.predict(str(img), boxes=whole, padding=1.6)[0].keypoints, atol=1e-4)


def test_batched_graph_heatmaps_equal_eager_and_flip_merge(run):
    from kpose.pose_model import GRAPH_MIN_BATCH

    model = kpose.load(run.dir)
    h, w = model.input_size
    crops = np.random.default_rng(0).uniform(0, 255, (GRAPH_MIN_BATCH, h, w, 3)).astype(np.float32)
    net = lambda x: np.asarray(model.keras_model(x, training=False))
    plain, mirrored = net(crops), net(crops[:, :, ::-1])[:, :, ::-1]
    flipped = 0.5 * (plain + mirrored[..., model.skeleton.flip_index()])
    for flip, want in ((False, plain), (True, flipped)):
        batched = model.heatmaps(crops, flip_test=flip)  # the graph function
        single = np.concatenate([model.heatmaps(c[None], flip_test=flip) for c in crops])  # eager
        np.testing.assert_allclose(batched, want, atol=1e-5)
        np.testing.assert_allclose(single, want, atol=1e-5)


def test_init_from_a_run_restores_its_training_heads(run):
    from kpose.models import build_network, network_outputs
    from kpose.skeletons import get_skeleton
    from kpose.training.transfer import TRAINING_HEADS_FILE, init_weights

    saved = np.load(run.dir / "model" / TRAINING_HEADS_FILE)
    assert sorted({k.rsplit("/", 1)[0] for k in saved.files}) == ["pass1_skeleton_pafs", "pass2_detection1_confs"]
    net = build_network(run.model.config, training_outputs=True)
    mcfg = {"family": "efficientpose", "variant": "rt"}
    summary = init_weights(net, run.dir, get_skeleton("coco17"), mcfg)
    assert "training heads pass1_skeleton_pafs, pass2_detection1_confs" in summary
    np.testing.assert_array_equal(net.get_layer("pass1_skeleton_pafs").get_weights()[0],
                                  saved["pass1_skeleton_pafs/0"])


def test_unknown_override_lists_keys(tmp_path):
    with pytest.raises(ValueError, match="unknown recipe key"):
        kpose.train("efficientpose_rt", overrides={"train.epoch": 1}, runs_dir=tmp_path)


def test_rejected_data_leaves_no_run_folder(tmp_path):
    (tmp_path / "empty.json").write_text('{"images": [], "annotations": [], "categories": []}')
    with pytest.raises(ValueError):
        kpose.train("efficientpose_rt", data=f"coco:{tmp_path / 'empty.json'}:{tmp_path}",
                    runs_dir=tmp_path / "runs", progress=False, overrides=no_official_init())
    assert not list((tmp_path / "runs").iterdir())


def test_evaluate_api_on_ground_truth_and_detections(run, tmp_path):
    import yaml
    data = yaml.safe_load((run.dir / "recipe.yaml").read_text())["data"]
    gt = kpose.evaluate(run.dir, data=data["val"], split="val", results_file=tmp_path / "gt.json",
                        flip_test=True, progress=False)
    # The run's metrics and predictions (taken from the last validation) are the saved model's.
    assert gt == {k: v for k, v in run.metrics.items() if k in gt}
    # The recipe's {"train": .., "val": ..} data as kpose.train takes it: split picks the spec.
    assert kpose.evaluate(run.dir, data=data, flip_test=True, progress=False) == gt
    with pytest.raises(ValueError, match=r"data has splits \['train', 'val'\]; split='test'"):
        kpose.evaluate(run.dir, data=data, split="test", progress=False)
    saved = json.loads((run.dir / "val_predictions.json").read_text())
    fresh = json.loads((tmp_path / "gt.json").read_text())
    np.testing.assert_allclose([r["keypoints"] for r in saved], [r["keypoints"] for r in fresh], atol=1e-2)
    ann = json.loads(open(data["val"].split(":")[1]).read())
    dets = [{"image_id": a["image_id"], "bbox": a["bbox"], "score": 0.9, "category_id": 1}
            for a in ann["annotations"]]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    on_dets = kpose.evaluate(run.dir, data=data["val"], detections=tmp_path / "dets.json",
                             results_file=tmp_path / "res.json", progress=False)
    assert abs(on_dets["AP"] - gt["AP"]) < 0.05
    assert json.loads((tmp_path / "res.json").read_text())


def test_official_mpii_weights_transfer_to_a_coco_model_by_keypoint_name(shared):
    from kpose.models import build_network, network_outputs
    from kpose.skeletons import COCO17
    from kpose.training.transfer import init_weights, resolve_init

    path = resolve_init("official", {"family": "efficientpose", "variant": "rt"})
    assert path.name == "EfficientPoseRT.h5" and path.is_file()
    net = build_network({"family": "efficientpose", "variant": "rt", "input_size": (32, 32),
                         "skeleton": "coco17"}, training_outputs=True)
    before = net.get_layer("upscaled_confs").get_weights()[0].copy()
    summary = init_weights(net, path, COCO17, {"family": "efficientpose", "variant": "rt"})
    assert "12 of 17 keypoints" in summary and "fresh: none" in summary
    assert "from the mean of upper_neck/head_top: nose, left_eye, right_eye, left_ear, right_ear" in summary
    official = kpose.load(path)
    src = official.keras_model
    # The backbone is copied as is.
    for a, b in zip(net.get_layer("stem_conv_res1").get_weights(), src.get_layer("stem_conv_res1").get_weights()):
        np.testing.assert_array_equal(a, b)
    # Head channels follow the keypoint names; on the keypoint-to-keypoint transposed
    # convolutions the face channels keep their fresh weights.
    s, t = src.get_layer("upscaled_confs").get_weights()[0], net.get_layer("upscaled_confs").get_weights()[0]
    for a, b in (("left_wrist", "left_wrist"), ("right_knee", "left_ankle"), ("left_shoulder", "right_hip")):
        np.testing.assert_array_equal(t[..., COCO17.index(a), COCO17.index(b)],
                                      s[..., official.skeleton.index(a), official.skeleton.index(b)])
    np.testing.assert_array_equal(t[..., COCO17.index("nose"), :], before[..., COCO17.index("nose"), :])
    np.testing.assert_array_equal(t[..., :, COCO17.index("left_ear")], before[..., :, COCO17.index("left_ear")])
    conf_s = src.get_layer("pass3_detection2_confs").get_weights()[0]
    conf_t = net.get_layer("pass3_detection2_confs").get_weights()[0]
    np.testing.assert_array_equal(conf_t[..., COCO17.index("right_ankle")],
                                  conf_s[..., official.skeleton.index("right_ankle")])
    # Face channels of the 1x1 heads start as the mean of the MPII head channels.
    head = [official.skeleton.index(n) for n in ("upper_neck", "head_top")]
    # (the release has no pass-1/2 output heads)
    layer = "pass3_detection2_confs"
    (ks, bs), (kt, bt) = src.get_layer(layer).get_weights(), net.get_layer(layer).get_weights()
    for face in ("nose", "left_ear"):
        np.testing.assert_allclose(kt[..., COCO17.index(face)], ks[..., head].mean(-1), rtol=1e-6)
        np.testing.assert_allclose(bt[COCO17.index(face)], bs[head].mean(), rtol=1e-6)


def test_init_official_without_the_file_names_where_it_looked(tmp_path, monkeypatch):
    from kpose.training.transfer import resolve_init

    from kpose.models import official
    from kpose.models.weights import Release

    monkeypatch.setenv("KPOSE_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("KPOSE_SHARED", str(tmp_path / "nowhere"))
    monkeypatch.setenv("KPOSE_CACHE", str(tmp_path / "cache"))
    # Offline: the download (here from a closed port on loopback) fails, and the error says
    # where kpose looked, what it tried to fetch and the fix.
    release = official.OFFICIAL_RELEASES["rt"]
    monkeypatch.setitem(official.OFFICIAL_RELEASES, "rt", Release(release.names, "http://127.0.0.1:9/x.h5",
                                                                  release.sha256))
    with pytest.raises(FileNotFoundError, match=r"EfficientPoseRT\.h5.*not found in .*downloading "
                                                r"http://127\.0\.0\.1:9/x\.h5 failed.*--set init=null"):
        resolve_init("official", {"family": "efficientpose", "variant": "rt"})
    (tmp_path / "EfficientPoseRT.h5").write_bytes(b"")
    assert resolve_init("official", {"family": "efficientpose", "variant": "rt"}) == tmp_path / "EfficientPoseRT.h5"


def test_init_from_a_model_of_another_variant_is_refused(run):
    from kpose.models import build_network, network_outputs
    from kpose.skeletons import COCO17
    from kpose.training.transfer import init_weights

    net = build_network({"family": "efficientpose", "variant": "rt", "input_size": (64, 64),
                         "skeleton": "coco17"}, training_outputs=True)
    rt = {"family": "efficientpose", "variant": "rt"}
    summary = init_weights(net, run.dir, COCO17, rt)
    assert f"layers from {run.dir}" in summary and "->" not in summary  # same skeleton: nothing mapped
    lite = build_network({"family": "efficientpose", "variant": "rt_lite", "input_size": (64, 64),
                          "skeleton": "coco17"}, training_outputs=True)
    with pytest.raises(ValueError, match="is an efficientpose rt model; the recipe builds efficientpose rt_lite"):
        init_weights(lite, run.dir, COCO17, {"family": "efficientpose", "variant": "rt_lite"})


def test_crop_padding_travels_with_the_model(tmp_path):
    from kpose.deploy.metadata import model_metadata
    from kpose.training import untrained_model

    model = untrained_model("efficientpose_rt", {"augment.box_padding": 1.1, "model.input_size": [64, 64]})
    assert model.crop_padding == 1.1
    assert model_metadata(model)["crop"]["padding"] == 1.1
    reloaded = kpose.load(model.save(tmp_path / "m"))
    assert reloaded.crop_padding == 1.1
    img = np.random.default_rng(0).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    boxes = [[20, 10, 40, 90]]
    default = reloaded.predict(img, boxes=boxes)[0].keypoints
    np.testing.assert_allclose(default, reloaded.predict(img, boxes=boxes, padding=1.1)[0].keypoints)
    assert not np.allclose(default, reloaded.predict(img, boxes=boxes, padding=1.25)[0].keypoints)


def test_early_epochs_train_at_the_early_input_size(tmp_path, capsys, caplog):
    """Progressive resizing: the first epochs run on smaller crops through the same network,
    the same optimizer carries on, and the saved model keeps the recipe's input size."""
    from kpose.training.fit_stages import size_stages
    from kpose.training.targets import target_specs
    from kpose.models import build_network, network_outputs

    outputs = network_outputs({"family": "efficientpose", "variant": "rt", "skeleton": "coco17"})
    sizes = [s.size for s in target_specs(outputs, (48, 32), 8.0, 1.0)]
    assert sizes == [(6, 4), (6, 4), (6, 4), (48, 32)]
    with pytest.raises(ValueError, match="stride 8"):
        target_specs(outputs, (50, 32), 8.0, 1.0)
    with pytest.raises(ValueError, match="train.early_input_size"):
        size_stages({"epochs": 3, "early_input_size": [50, 32], "early_epochs": 1}, (64, 48))
    assert size_stages({"epochs": 3, "early_input_size": [48, 32], "early_epochs": 1}, (64, 48)) == \
        [(0, 1, (48, 32)), (1, 3, (64, 48))]
    assert size_stages({"epochs": 3, "early_input_size": None, "early_epochs": 2}, (64, 48)) == [(0, 3, (64, 48))]
    # The last epoch is at the model's size; an early size that is not smaller is not used.
    assert size_stages({"epochs": 2, "early_input_size": [48, 32], "early_epochs": 2}, (64, 48)) == \
        [(0, 1, (48, 32)), (1, 2, (64, 48))]
    assert size_stages({"epochs": 1, "early_input_size": [48, 32], "early_epochs": 2}, (64, 48)) == [(0, 1, (64, 48))]
    assert size_stages({"epochs": 3, "early_input_size": [128, 96], "early_epochs": 2}, (64, 64)) == [(0, 3, (64, 64))]
    assert size_stages({"epochs": 0, "early_input_size": [48, 32], "early_epochs": 2}, (64, 48)) == []

    tr = generate(tmp_path, 6, seed=23, split="train", progress=False)
    data = f"coco:{tr}:{tmp_path / 'train'}"
    r = kpose.train("efficientpose_rt", data=data, epochs=3, batch_size=2, runs_dir=tmp_path / "runs",
                    overrides={"train.steps_per_epoch": 2, "model.input_size": [64, 48], "init": None,
                               "train.early_input_size": [48, 32], "train.early_epochs": 2,
                               "train.eval_every": 3, "data.max_val": 3}, progress=False)
    assert "epochs 1-2 at 48x32" in capsys.readouterr().out
    assert "is unbuilt" not in caplog.text  # each stage's trainer is built before its fit
    assert len(r.history["loss"]) == 3 and all(np.isfinite(r.history["loss"]))
    assert r.model.input_size == (64, 48) and r.model.keras_model.input_shape[1:3] == (64, 48)
    # One validation, after the last epoch (not after the early stage's last one).
    assert (r.dir / "validation.csv").read_text().splitlines()[1].startswith("2,")
    assert len((r.dir / "history.csv").read_text().splitlines()) == 4


def test_mixed_precision_trains_in_float16_and_returns_a_float32_model(tmp_path, monkeypatch):
    from kpose._tf import keras
    from kpose.training import engine

    tr = generate(tmp_path, 4, seed=21, split="train", progress=False)
    va = generate(tmp_path, 2, seed=22, split="val", progress=False)
    data = {"train": f"coco:{tr}:{tmp_path / 'train'}", "val": f"coco:{va}:{tmp_path / 'val'}"}
    built = []
    monkeypatch.setattr(engine, "build_network", lambda *a, **k: built.append(engine_build(*a, **k)) or built[-1])
    overrides = {"train.steps_per_epoch": 2, "model.input_size": [64, 64], "train.mixed_precision": True,
                 "init": None}
    run = kpose.train("efficientpose_rt", data=data, epochs=1, batch_size=2, overrides=overrides,
                      runs_dir=tmp_path / "runs", progress=False)
    training_net = built[0]
    assert training_net.get_layer("stem_conv_res1").compute_dtype == "float16"
    assert training_net.get_layer("stem_conv_res1").kernel.dtype == "float32"  # float32 weights
    assert run.metrics["mixed_precision"] is True and run.metrics["optimizer_steps"] == 2
    assert np.isfinite(run.history["loss"]).all()
    # The returned and saved model computes in float32, and the global policy is restored.
    assert keras.mixed_precision.global_policy().name == "float32"
    assert {l.compute_dtype for l in run.model.keras_model.layers if l.weights} == {"float32"}
    img = next((tmp_path / "val").glob("*.jpg"))
    np.testing.assert_allclose(run.model.predict(str(img))[0].keypoints,
                               kpose.load(run.dir).predict(str(img))[0].keypoints, atol=1e-4)
    with pytest.raises(ValueError, match="mixed_precision: true with qat"):
        kpose.train("efficientpose_rt", data=data, epochs=1, batch_size=2, overrides=overrides, qat=True,
                    runs_dir=tmp_path / "runs2", progress=False)


def engine_build(*args, **kwargs):
    from kpose.models import build_network

    return build_network(*args, **kwargs)


def test_a_run_on_one_skeleton_initialises_a_model_of_another(run):
    """COCO-17 run -> a 5-keypoint animal skeleton: the backbone loads, head channels follow
    the names they share (eyes, nose), the others stay fresh, and the summary says which."""
    from kpose.models import build_network
    from kpose.skeletons import Skeleton
    from kpose.training.transfer import init_weights

    dog = Skeleton(name="dog", keypoints=("left_eye", "right_eye", "nose", "withers", "tail_base"),
                   flip_pairs=((0, 1),), limbs=((0, 2), (1, 2), (2, 3), (3, 4)), sigmas=(0.025,) * 5)
    net = build_network({"family": "efficientpose", "variant": "rt", "input_size": (64, 64),
                         "skeleton": dog.to_dict()}, training_outputs=True)
    before = net.get_layer("upscaled_confs").get_weights()[0].copy()
    summary = init_weights(net, run.dir, dog, {"family": "efficientpose", "variant": "rt"})
    assert "coco17 -> dog" in summary and "(3 of 5 keypoints)" in summary and "fresh: withers, tail_base" in summary
    src = run.model.keras_model
    for a, b in zip(net.get_layer("stem_conv_res1").get_weights(), src.get_layer("stem_conv_res1").get_weights()):
        np.testing.assert_array_equal(a, b)
    k_src = src.get_layer("upscaled_confs").get_weights()[0]
    k_dst = net.get_layer("upscaled_confs").get_weights()[0]
    coco = run.model.skeleton
    np.testing.assert_array_equal(k_dst[..., dog.index("nose"), dog.index("left_eye")],
                                  k_src[..., coco.index("nose"), coco.index("left_eye")])
    np.testing.assert_array_equal(k_dst[..., dog.index("withers"), :], before[..., dog.index("withers"), :])
