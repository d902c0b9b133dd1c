"""SimplePose (Li et al., AAAI 2020; family `simplepose`, recipe `simplepose_hourglass`): the
builder's declared outputs and the paper-sized network's size, the focal L2 loss, limb heatmap
targets from the TF encoder, and a train -> save -> load -> predict -> export round trip."""
import numpy as np
import pytest

import kpose
from kpose._tf import keras, tf
from kpose.codecs import LimbHeatmapCodec
from kpose.data.synthetic import generate
from kpose.models import build_network, get_family, network_outputs
from kpose.models.flops import count_flops, count_parameters
from kpose.models.simplepose import build_simplepose, scales
from kpose.models.simplepose_cost import simplepose_cost
from kpose.recipe import CHOICES, RecipeError, load_recipe
from kpose.skeletons import COCO17
from kpose.training.targets import encode_people_targets, target_specs
from kpose.training.trainer import LOSSES, focal_squared_error, loss_function, squared_error

from test_deploy import TEST_VARIANT, layer_kinds

K, L = COCO17.num_keypoints, len(COCO17.limbs)
# The paper's network (4 stacks, 256 channels, +128 per level) with COCO-17 heads: the deployed
# network, and with the training-only heads of the coarser scales; multiply-adds at 512x512.
PAPER_WEIGHTS, PAPER_TRAINING_WEIGHTS, PAPER_MACS = 95_961_750, 128_980_950, 227_758_866_432


def _squeezes(net) -> int:
    return sum(isinstance(layer, keras.layers.GlobalAveragePooling2D) for layer in net.layers)


def test_declared_outputs_and_cost_formula_match_the_built_networks():
    """Every declared output is built, at its stride and width; `kpose models` counts SimplePose
    without building it (Family.cost), and the formula equals kpose.models.flops' counts of the
    built network, deployed and with every training output."""
    family = get_family("simplepose")
    assert family.task == "bottom_up" and set(family.variants) == {"default", "small", "tiny"}
    assert family.cost is simplepose_cost
    assert scales("default") == scales("small") == (4, 8, 16, 32, 64) and scales("tiny") == (4, 8, 16)
    size, kinds = (64, 128), {}
    for variant in ("small", "tiny"):
        specs = family.outputs(variant, K, L)
        stacks = {"small": 2, "tiny": 1}[variant]
        assert len(specs) == 2 * stacks * len(scales(variant))   # 2 outputs per scale
        assert [(s.name, s.kind, s.stride) for s in specs if s.inference] == [
            ("heatmaps", "heatmaps", 4), ("limb_heatmaps", "limb_heatmaps", 4)]
        for training in (False, True):
            net = build_simplepose(variant, K, L, size, training_outputs=training)
            declared = specs if training else [s for s in specs if s.inference]
            assert net.output_names == [s.name for s in declared]
            for spec, out in zip(declared, net.outputs):
                assert tuple(out.shape[1:]) == (size[0] // spec.stride, size[1] // spec.stride, spec.channels)
            assert simplepose_cost(variant, K, L, size, training) == (count_parameters(net), count_flops(net))
            # One squeeze-excitation per supervised scale and stack; deployed, the stride-4 path's only.
            assert _squeezes(net) == stacks * (len(scales(variant)) if training else 1)
        kinds[variant] = layer_kinds(net)
    # The test suite's stand-in has every kind of layer the recipe's variant has.
    assert TEST_VARIANT["simplepose"] == "tiny" and kinds["tiny"] == kinds["small"]
    with pytest.raises(ValueError, match="multiple of 64"):
        build_simplepose("tiny", K, L, (96, 96))
    with pytest.raises(ValueError, match="known variants"):
        build_simplepose("huge", K, L, (64, 64))


def test_paper_sized_network_weights():
    # Counted on the built graph, nothing trained or run (any input size has the same weights),
    # and by the formula (the training network's 40 outputs are not built: the formula is
    # checked on the same code paths above).
    deployed = build_simplepose("default", K, L, (64, 64))
    assert count_parameters(deployed) == PAPER_WEIGHTS and _squeezes(deployed) == 4
    assert simplepose_cost("default", K, L, (64, 64)) == (PAPER_WEIGHTS, count_flops(deployed))
    assert simplepose_cost("default", K, L, (512, 512)) == (PAPER_WEIGHTS, PAPER_MACS)
    assert simplepose_cost("default", K, L, (512, 512), True)[0] == PAPER_TRAINING_WEIGHTS
    assert len(get_family("simplepose").outputs("default", K, L)) == 4 * 5 * 2


def _focal_numpy(pred, target, gamma, threshold):
    s_t = np.where(target >= threshold, pred, 1.0 - pred)
    return np.abs(1.0 - s_t) ** gamma * (pred - target) ** 2


def test_focal_l2_matches_the_formula_and_is_l2_at_gamma_0():
    rng = np.random.default_rng(0)
    target = np.where(rng.uniform(size=(2, 5, 6, 3)) < 0.3, rng.uniform(size=(2, 5, 6, 3)), 0.0).astype(np.float32)
    pred = rng.normal(0.2, 0.6, target.shape).astype(np.float32)   # some outside [0, 1]
    target[0, 0, 0, 0], pred[0, 0, 0, 0] = 0.01, 0.7                 # at the threshold: s_t = pred
    for gamma in (2.0, 1.0, 0.5):
        got = focal_squared_error(tf.constant(pred), tf.constant(target), gamma, 0.01).numpy()
        np.testing.assert_allclose(got, _focal_numpy(pred, target, gamma, 0.01), rtol=1e-5, atol=1e-7)
    assert got[0, 0, 0, 0] == pytest.approx(0.3 ** 0.5 * 0.69 ** 2, rel=1e-5)
    plain = squared_error(tf.constant(pred), tf.constant(target)).numpy()
    np.testing.assert_allclose(focal_squared_error(tf.constant(pred), tf.constant(target), 0.0).numpy(), plain,
                               rtol=1e-6)
    np.testing.assert_allclose(plain, (pred - target) ** 2, rtol=1e-6)
    # Gradients stay finite where the weight's base is 0 (a background pixel predicted exactly 0).
    for gamma in (0.0, 2.0):
        p = tf.Variable([0.0, 1.0, 0.4])
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(focal_squared_error(p, tf.constant([0.0, 1.0, 0.0]), gamma))
        assert np.isfinite(tape.gradient(loss, p).numpy()).all()
    # Easy pixels weigh less than hard ones with the same error: background predicted at 0.1
    # vs foreground (target 0.9) predicted at 0.8.
    easy, hard = (focal_squared_error(tf.constant([p]), tf.constant([t]), 2.0).numpy()[0]
                  for p, t in ((0.1, 0.0), (0.8, 0.9)))
    assert easy == pytest.approx(0.1 ** 4) and hard == pytest.approx(0.2 ** 2 * 0.1 ** 2)


def test_the_recipe_selects_the_loss_and_refuses_unknown_ones(tmp_path):
    assert set(LOSSES) == set(CHOICES["loss.type"])
    cfg = load_recipe("simplepose_hourglass")
    assert cfg["loss"]["type"] == "focal_l2" and cfg["codec"]["type"] == "limb_heatmap"
    fn = loss_function(cfg["loss"])
    pred, target = tf.constant([0.3, 0.9]), tf.constant([0.0, 0.5])
    np.testing.assert_allclose(fn(pred, target).numpy(), _focal_numpy(pred.numpy(), target.numpy(), 2.0, 0.01))
    assert loss_function(load_recipe("openpose_lightweight")["loss"]) is squared_error
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {family: simplepose, variant: small}\nloss: {type: focal}\n")
    with pytest.raises(RecipeError, match=rf"{bad}: loss.type='focal' .* one of l2, focal_l2"):
        load_recipe(str(bad))
    with pytest.raises(RecipeError, match=r"override: loss.type='l1'"):
        load_recipe("simplepose_hourglass", {"loss.type": "l1"})
    with pytest.raises(ValueError, match=r"loss.type='l1'.*set loss.type"):
        loss_function({**cfg["loss"], "type": "l1"})


def test_limb_heatmap_targets_are_the_codec_encoding_with_the_ignore_mask():
    rng = np.random.default_rng(3)
    people = np.concatenate([rng.uniform(4, 60, (3, K, 2)), rng.integers(0, 3, (3, K, 1))], -1).astype(np.float32)
    ignore = np.zeros((64, 64), np.float32)
    ignore[:16, :32] = 1.0
    outputs = network_outputs({"family": "simplepose", "variant": "tiny", "skeleton": "coco17"})
    specs = target_specs(outputs, (64, 64), sigma=4.0, paf_width=1.0, num_keypoints=K, limb_sigma=6.0)
    limb = next(s for s in specs if s.name == "limb_heatmaps")
    assert (limb.kind, limb.size, limb.sigma, limb.stride) == ("limb_heatmaps", (16, 16), 1.5, 4)
    coarse = next(s for s in specs if s.kind == "limb_heatmaps" and s.stride == 16)
    assert coarse.size == (4, 4) and coarse.sigma == 1.0   # at least one cell
    t, w = encode_people_targets(tf.constant(people), tf.constant(ignore), (64, 64), specs,
                                 np.asarray(COCO17.limbs, np.int32))
    codec = LimbHeatmapCodec((64, 64), (16, 16), COCO17.limbs, limb_sigma=1.5, sigma=1.0)
    want, _ = codec.encode(people)
    assert want.max() > 0.9
    np.testing.assert_allclose(t["limb_heatmaps"].numpy(), want, atol=1e-5)
    np.testing.assert_allclose(t["heatmaps"].numpy(), codec.encode_heatmaps(people)[0], atol=1e-5)
    np.testing.assert_allclose(t["stack1_s16_limb_heatmaps"].numpy(),
                               LimbHeatmapCodec((64, 64), (4, 4), COCO17.limbs).encode(people)[0], atol=1e-5)
    weight = w["limb_heatmaps"].numpy()[..., 0]   # as for PAFs: 0 inside ignore regions
    assert weight.shape == (16, 16) and np.all(weight[:4, :8] == 0) and np.all(weight[4:] == 1)
    with pytest.raises(ValueError, match="limb_sigma"):
        target_specs(outputs, (64, 64), 4.0, 1.0, K)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("simplepose")
    tr = generate(root, 4, seed=51, split="train", progress=False)
    va = generate(root, 2, seed=52, split="val", progress=False)
    return {"train": f"coco:{tr}:{root / 'train'}", "val": f"coco:{va}:{root / 'val'}"}


def test_recipe_trains_saves_loads_predicts_and_exports(data, tmp_path):
    from kpose.deploy.exporter import export_all
    from kpose.deploy.runtime import load_exported, read_metadata

    # tiny: 1 stack supervised at 3 scales, with the recipe's weights of those (stride 4, 8, 16).
    overrides = {"train.steps_per_epoch": 1, "model.input_size": [64, 64],
                 "model.variant": TEST_VARIANT["simplepose"], "loss.pass_weights": [12, 4, 6, 2, 3, 1]}
    run = kpose.train("simplepose_hourglass", data=data, epochs=1, batch_size=2, runs_dir=tmp_path / "runs",
                      overrides=overrides, progress=False)
    assert np.isfinite(run.history["loss"]).all() and run.metrics["task"] == "bottom_up" and "AP" in run.metrics
    assert set(run.history) >= {"heatmaps", "limb_heatmaps", "stack1_s8_heatmaps", "stack1_s16_limb_heatmaps"}
    codec = run.model.codec
    assert isinstance(codec, LimbHeatmapCodec) and codec.heatmap_size == (16, 16) and codec.limbs == COCO17.limbs
    assert (codec.sigma, codec.limb_sigma) == (1.0, 1.0)   # recipe sigma 4 px, limb_sigma 4 px at stride 4

    model = kpose.load(run.dir)
    assert isinstance(model.codec, LimbHeatmapCodec) and model.config["codec"]["type"] == "limb_heatmap"
    img = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    x = np.random.default_rng(1).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    for a, b in zip(run.model.maps(x), model.maps(x)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert len(model.predict(img)) == len(run.model.predict(img))
    assert all(p.keypoints.shape == (K, 3) for p in model.predict(img, flip_test=True))

    # Exported: outputs named by the codec, metadata carrying it, parity with Keras.
    report = export_all(model, tmp_path / "export", images=x, formats=("tflite",), precisions=("fp32",),
                        progress=False)
    parity = (tmp_path / "export" / "parity.md").read_text()
    assert report["passed"], parity
    assert report["outputs"] == ["heatmaps", "limb_heatmaps"] and "max abs diff limb_heatmaps" in parity
    (entry,) = report["formats"]
    assert entry["max_abs_diff_limb_heatmaps"] < 1e-4 and entry["gpu_delegate_compatible"]
    exported = load_exported(entry["path"])
    meta = read_metadata(entry["path"])
    assert [o["name"] for o in meta["outputs"]] == ["heatmaps", "limb_heatmaps"]
    assert meta["outputs"][1]["shape"] == [1, 16, 16, L] and meta["codec"] == model.codec.to_dict()
    assert meta["codec"]["type"] == "limb_heatmap" and meta["skeleton"]["limbs"] == [list(p) for p in COCO17.limbs]
    assert exported.codec == model.codec
    assert len(exported.predict(img)) == len(model.predict(img))


def test_a_limb_heatmap_network_needs_the_limb_heatmap_codec():
    from kpose.training import untrained_model

    with pytest.raises(ValueError, match="set codec.type: limb_heatmap"):
        untrained_model("simplepose_hourglass", {"codec.type": "paf", "model.input_size": [64, 64]})
    with pytest.raises(ValueError, match="set codec.type: paf"):
        untrained_model("openpose_lightweight", {"codec.type": "limb_heatmap", "model.input_size": [64, 64]})
    with pytest.raises(ValueError, match="needs multiples of 64"):
        build_network({"family": "simplepose", "variant": "tiny", "input_size": [32, 32], "skeleton": "coco17"})
