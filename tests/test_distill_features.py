"""Label-free QAT learns the float network's inner features too (kpose.training.distill)."""
import numpy as np

import kpose
from kpose._tf import keras
from kpose.training.distill import distill_qat, feature_taps


def test_feature_taps_are_block_ends_not_outputs_nor_rescaled_concatenations():
    x = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(3, 1, name="a")(x)
    res = keras.layers.Add(name="res")([x, a])
    cat = keras.layers.Concatenate(name="cat")([res, a])
    scaled = keras.layers.Concatenate(name="scaled")([cat, x])
    b = keras.layers.Conv2D(2, 1, name="b")(scaled)
    out = keras.layers.Concatenate(name="out")([b, b])
    net = keras.Model(x, out)
    assert feature_taps(net, rescaled={"scaled": [1.0, 0.25]}) == ["res", "cat"]
    assert feature_taps(net) == ["res", "cat", "scaled"]


def test_distill_qat_brings_the_inner_features_closer(shared):
    # Official RT (swish): int8 noise builds up inside the backbone and the passes, so the same
    # steps with the feature term leave the copy's features closer to the float ones than
    # steps on the output maps alone (session 26, 300 steps at the default weight 0.1: int8 keypoints
    # 2.22 -> 1.99 px median from float, p90 9.5 -> 7.0 px). Weight 1 here: a wider margin in 12 steps.
    model = kpose.load(shared / "peers" / "efficientpose" / "EfficientPoseRT.h5")
    coco = shared / "data" / "coco_mini"
    data = f"coco:{coco}/annotations/person_keypoints_train2017.json:{coco}/train2017"
    taps = feature_taps(model.keras_model, {"concatenate_1": [], "concatenate_2": []})
    assert taps == ["block2b_add_res1", "block3b_add_res1"] + [
        f"pass{p}_block1_mbconv{m}_{n}_dense" for p, n in ((1, "skeleton"), (2, "detection1"), (3, "detection2"))
        for m in (2, 3)]
    teacher = keras.Model(model.keras_model.inputs, [model.keras_model.get_layer(n).output for n in taps])
    x = np.random.default_rng(0).uniform(0, 255, (4, *model.input_size, 3)).astype(np.float32)
    reference = teacher(x)

    def feature_error(weight: float) -> float:
        qat = distill_qat(model, data, steps=12, batch_size=4, lr=1e-3, feature_weight=weight, progress=False)
        assert qat.config["qat"]["feature_taps"] == (len(taps) if weight else 0)
        net = qat.keras_model
        names = {layer.name for layer in net.layers}
        student = keras.Model(net.inputs, [net.get_layer(f"quant_{n}" if f"quant_{n}" in names else n).output
                                           for n in taps])
        return float(np.mean([np.mean((s - t) ** 2) / np.var(t) for s, t in zip(student(x), reference)]))

    without, with_features = feature_error(0.0), feature_error(1.0)
    assert with_features < 0.8 * without, (with_features, without)
