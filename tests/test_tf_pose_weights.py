"""OpenPose-MobileNetV2: kpose's builder, the CMU18 skeleton, and parity with
tf-pose-estimation's released frozen graph (which only this test runs, with tf.compat.v1)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kpose._tf import tf
from kpose.models.graphdef import FrozenGraph
from kpose.models.openpose_mobilenet_v2 import GRAPH_OUTPUT, build_openpose_mobilenet_v2, openpose_mobilenet_v2_outputs
from kpose.models.tf_pose_release import load_tf_pose_graph
from kpose.skeletons import CMU18, COCO17, get_skeleton

GRAPH = "peers/tf_pose_estimation/openpose_mobilenet_v2_small.pb"
# Two of the release's sample images, resized to its recommended 432x368 input.
PARITY_IMAGES = ("golf.jpg", "ski.jpg")
SIZE = (368, 432)


# --- architecture (no shared data) -------------------------------------------------

def test_outputs_and_params():
    model = build_openpose_mobilenet_v2("small", 18, 19, SIZE)
    assert model.output_names == ["heatmaps", "pafs"]
    assert [tuple(o.shape) for o in model.outputs] == [(None, 46, 54, 18), (None, 46, 54, 38)]
    # The release's 473,472 trainable + 6,912 BatchNorm statistics + the identity input
    # normalisation (6), less the last stage's background output (64 weights + 1 bias).
    assert model.count_params() == 480_390 - 65
    assert model.get_layer("input_normalization").count_params() == 6


def test_training_outputs_follow_declared_specs():
    model = build_openpose_mobilenet_v2("small", num_keypoints=17, num_limbs=19, input_size=(128, 160),
                                        training_outputs=True)
    specs = openpose_mobilenet_v2_outputs("small", 17, 19)
    assert model.output_names == [s.name for s in specs]
    assert [s.name for s in specs if s.inference] == ["heatmaps", "pafs"]
    assert model.output_names[-2:] == ["heatmaps", "pafs"] and len(specs) == 12
    for spec, out in zip(specs, model.outputs):
        assert tuple(out.shape[1:]) == (128 // spec.stride, 160 // spec.stride, spec.channels)
        assert spec.kind in ("heatmaps", "pafs") and spec.stride == 8


def test_rejects_sizes_off_the_backbone_stride():
    with pytest.raises(ValueError, match="multiple of 16"):
        build_openpose_mobilenet_v2(input_size=(360, 432))


def test_cmu18_skeleton():
    assert get_skeleton("cmu18") is CMU18 and CMU18.num_keypoints == 18 and len(CMU18.limbs) == 19
    assert CMU18.keypoints[:3] == ("nose", "neck", "right_shoulder")
    assert set(CMU18.keypoints) - set(COCO17.keypoints) == {"neck"}
    perm, sign = CMU18.limb_flip()
    # Mirroring twice is the identity, and every limb is stored in the same direction as its mirror.
    assert np.array_equal(perm[perm], np.arange(19)) and np.all(sign == 1)
    name = {i: "-".join(CMU18.keypoints[k] for k in limb) for i, limb in enumerate(CMU18.limbs)}
    assert name[int(perm[0])] == "neck-left_hip" and name[int(perm[14])] == "neck-nose"


def test_frozen_graph_errors_name_the_node():
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (1, 8, 8, 3), name="image")
        w = tf.constant(np.zeros((3, 3, 3, 4), np.float32), name="w")
        tf.nn.conv2d(x, tf.identity(w), 1, "SAME", name="conv")
    graph = FrozenGraph(g.as_graph_def(), "toy.pb")
    assert graph.input_const("conv", 1, (3, 3, 3, 4)).shape == (3, 3, 3, 4)   # through the Identity
    with pytest.raises(ValueError, match=r"'conv'.*\(3, 3, 3, 4\), expected \(3, 3, 3, 8\)"):
        graph.input_const("conv", 1, (3, 3, 3, 8))
    with pytest.raises(KeyError, match="toy.pb: node 'conv2'"):
        graph.input_const("conv2", 1)
    with pytest.raises(ValueError, match="'image'.*Placeholder, not a constant"):
        graph.input_const("conv", 0)


# --- the release (needs ../shared) -----------------------------------------------------

@pytest.fixture(scope="module")
def release(shared):
    path = shared / GRAPH
    if not path.exists():
        pytest.skip(f"{path} not found")
    model, info = load_tf_pose_graph(path, input_size=SIZE)
    return path, model, info


def _run_release(path, bgr_batches):
    """The original graph, run with tf.compat.v1 (test only: kpose never imports it)."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(path.read_bytes())
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=g) as sess:
        return [sess.run(GRAPH_OUTPUT + ":0", {"image:0": b}) for b in bgr_batches]


def test_release_parity(release):
    path, model, info = release
    assert info["variant"] == "small" and info["skeleton"] == "cmu18"
    assert info["unused_graph_weights"] == []
    rgb = [np.asarray(Image.open(path.parent / n).convert("RGB").resize(SIZE[::-1], Image.BILINEAR),
                      np.float32)[None] for n in PARITY_IMAGES]
    refs = _run_release(path, [np.ascontiguousarray(x[..., ::-1]) for x in rgb])
    for name, x, ref in zip(PARITY_IMAGES, rgb, refs):
        heatmaps, pafs = (o.numpy() for o in model(x, training=False))
        ours = np.concatenate([heatmaps, pafs], axis=-1)
        ref = np.concatenate([ref[..., :18], ref[..., 19:]], axis=-1)  # without the background
        assert ours.shape == ref.shape == (1, 46, 54, 56)
        # float32 rounding only. The backbone normalises each image by its own statistics,
        # which amplifies rounding on low-contrast channels: on other sample images the
        # release's own float32 output differs from a float64 evaluation by more than 1e-4.
        assert np.abs(ours - ref).max() < 1e-4, name

        # PAF layout (x, y): the neck -> hip limbs of standing people point down (+y).
        for limb in (CMU18.limbs.index((1, 8)), CMU18.limbs.index((1, 11))):
            px, py = ref[0, ..., 18 + 2 * limb], ref[0, ..., 19 + 2 * limb]
            strong = np.hypot(px, py) > 0.5
            assert strong.sum() >= 3 and py[strong].mean() > max(0.4, abs(px[strong].mean())), (name, limb)


def test_release_errors_name_the_node(release, tmp_path):
    path = release[0]
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(path.read_bytes())
    graph = FrozenGraph(graph_def)
    op = "Openpose/MConv_Stage3_L2_2_depthwise/depthwise"
    const = graph.node(graph.node(op).input[1])
    const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.zeros((3, 3, 60, 1), np.float32)))
    bad = tmp_path / "bad.pb"
    bad.write_bytes(graph_def.SerializeToString())
    with pytest.raises(ValueError, match=f"input 1 of '{op}'.*\\(3, 3, 60, 1\\), expected \\(3, 3, 64, 1\\)"):
        load_tf_pose_graph(bad)


def test_small_bn_int8_takes_the_release_with_the_same_function(release):
    """small_bn_int8 (small_bn in its int8 form) from the release: on one image its batch
    norms in training mode compute what the release's per-image norms compute, and its
    scaled features (1/32) are taken back by the stages' first depthwise kernels, so the
    function is unchanged."""
    from kpose._tf import keras
    from kpose.models import build_network
    from kpose.training.transfer import init_weights

    path, small, _ = release
    mcfg = {"family": "openpose_mobilenet_v2", "variant": "small_bn_int8"}
    net = build_network({**mcfg, "input_size": list(SIZE), "skeleton": "cmu18"})
    init_weights(net, path, CMU18, mcfg)
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (1, *SIZE, 3)).astype(np.float32)
    features = keras.Model(net.inputs, net.get_layer("features_scaled").output)(image, training=True)
    want = keras.Model(small.inputs, small.get_layer("features").output)(image)
    # Same arithmetic up to the order of float32 sums (features span about [-70, 110]).
    np.testing.assert_allclose(features.numpy() * 32, want.numpy(), rtol=1e-4, atol=5e-3)
    for name in ("stage1_heatmap1_depthwise", "stage2_paf1_depthwise"):
        got, src = net.get_layer(name).get_weights()[0], small.get_layer(name).get_weights()[0]
        np.testing.assert_array_equal(got[:, :, -64:], 32 * src[:, :, -64:])  # the 64 feature channels
        np.testing.assert_array_equal(got[:, :, :-64], src[:, :, :-64])       # the maps of the stage before
    np.testing.assert_array_equal(net.get_layer("stage2_paf2_depthwise").get_weights()[0],
                                  small.get_layer("stage2_paf2_depthwise").get_weights()[0])
    # The 1x1 depthwise scales are folded into the kernels that follow them...
    names = {l.name for l in net.layers}
    assert "stage1_heatmap4_depthwise" not in names and "stage6_paf5_depthwise" not in names
    scale = small.get_layer("stage1_heatmap4_depthwise").get_weights()[0][0, 0, :, 0]
    np.testing.assert_allclose(net.get_layer("stage1_heatmap4_pointwise").get_weights()[0],
                               small.get_layer("stage1_heatmap4_pointwise").get_weights()[0] * scale[:, None],
                               rtol=1e-6)
    # ...and a stage computes what the release's computes, from the same features.
    feats = rng.normal(0, 8, (2, *want.shape[1:])).astype(np.float32)
    stage = keras.Model(net.get_layer("features_scaled").output, net.get_layer("stage1_heatmaps").output)
    release_stage = keras.Model(small.get_layer("features").output, small.get_layer("stage1_heatmaps").output)
    np.testing.assert_allclose(stage(feats / 32).numpy(), release_stage(feats).numpy(), rtol=1e-4, atol=1e-5)
