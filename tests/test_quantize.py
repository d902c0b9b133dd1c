"""kpose.models.quantize builds the QAT network tfmot's own quantize_annotate + quantize_apply
build (it skips two of their five graph copies), for every layer kind kpose adds to tfmot's."""
import json
import re

import numpy as np
import pytest

from kpose._tf import keras, tf
from kpose.models import quantize
from kpose.models.backbones import HardSigmoid
from kpose.models.openpose_mobilenet_v2 import InstanceNormalization, ResizeBilinearLike


def _every_kind() -> keras.Model:
    """Conv+BN+ReLU, depthwise+BN, transposed conv+BN (not foldable), ELU, instance norm,
    hard sigmoid, rescaling, multiply, same-scale resize, concatenation, add; weights that
    are not the initial ones."""
    tf.keras.utils.set_random_seed(5)
    x = inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 127.5, -1.0)(x)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    d = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False)(x)
    d = keras.layers.BatchNormalization()(d)
    d = InstanceNormalization()(d)
    gate = HardSigmoid()(keras.layers.Conv2D(8, 1)(d))
    d = keras.layers.Multiply()([d, gate])
    up = keras.layers.Conv2DTranspose(8, 4, strides=2, padding="same", use_bias=False)(d)
    up = keras.layers.BatchNormalization()(up)
    y = keras.layers.Add()([x, up])
    y = keras.layers.Concatenate()([y, ResizeBilinearLike()([d, x])])
    y = keras.layers.ELU()(keras.layers.Conv2D(6, 1)(y))
    net = keras.Model(inputs, keras.layers.Conv2D(4, 1)(y))
    rng = np.random.default_rng(0)
    for w in net.weights:
        w.assign(w + rng.normal(0, 0.1, w.shape).astype(np.float32))
    return net


def _unnumbered(text: str) -> str:
    # tfmot names the input's QuantizeLayer by a process-wide counter.
    return re.sub(r"quantize_layer(_\d+)?", "quantize_layer", text)


def test_quantize_model_builds_what_tfmot_builds():
    net = _every_kind()
    mine, theirs = quantize.quantize_model(net), quantize.quantize_model_via_tfmot(net)
    assert quantize.float_layer_names(mine) == []
    kinds = {type(l.layer).__name__ for l in mine.layers if hasattr(l, "layer")}
    assert {"IntegerELU", "QuantizedInstanceNormalization", "QuantizedHardSigmoid", "QuantizedBatchNormalization",
            "Rescaling", "Multiply", "ResizeBilinearLike", "DepthwiseConv2D", "Conv2DTranspose"} <= kinds
    assert _unnumbered(json.dumps(mine.get_config(), default=str)) == \
        _unnumbered(json.dumps(theirs.get_config(), default=str))
    for group in ("weights", "trainable_weights", "non_trainable_weights"):
        a, b = getattr(mine, group), getattr(theirs, group)
        assert [_unnumbered(w.name) for w in a] == [_unnumbered(w.name) for w in b], group
        assert all(np.array_equal(v.numpy(), w.numpy()) for v, w in zip(a, b)), group
    x = np.random.default_rng(1).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    for training in (False, True):
        np.testing.assert_array_equal(mine(x, training=training), theirs(x, training=training))


def test_a_batch_norm_no_convolution_feeds_is_refused():
    x = inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.Add()([x, x])
    x = keras.layers.BatchNormalization(name="lone_bn")(x)
    with pytest.raises(ValueError, match="lone_bn.*BatchNormalization"):
        quantize.quantize_model(keras.Model(inputs, x))
