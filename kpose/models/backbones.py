"""ImageNet classification backbones, headless, for kpose's top-down heads.

Each backbone is a function (tensor -> stride-32 features) that adds its layers to the
caller's graph, so a pose network stays one flat functional model (QAT, folding and
per-layer weight loading see every layer). Layer names are those of tf_keras.applications,
whose ImageNet weight files therefore load by name:

* ``resnet50``: `tf_keras.applications.ResNet50` itself (2048 channels);
* ``mobilenetv2``: `tf_keras.applications.MobileNetV2` itself, width 1.0 (1280 channels);
* ``mobilenetv3s``: MobileNetV3-Small, width 1.0 (576 channels), written here with the
  applications' layer names and weights: the applications build hard-sigmoid from
  TFOpLambda layers (``x + 3.0``, ``* (1 / 6)``) that tfmot cannot wrap, so QAT could not
  cover them; here it is one `HardSigmoid` layer (same function; kpose.models.quantize
  has its QAT copy);
* ``resnet18``: ResNet-18 (He et al. 2016, basic blocks [2, 2, 2, 2], 512 channels; the
  applications have none), torchvision's structure (no convolution biases, symmetric
  padding) in the applications' naming style: conv1_conv, conv2_block1_1_conv, ...

Each declares the input normalisation its weights expect (`BACKBONES[name].normalization`);
the pose builder puts it in the graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from kpose._tf import keras, tf

_L = keras.layers
# He initialisation over the output fan (torchvision's ResNet, Xiao et al.'s backbone).
_HE_OUT = {"class_name": "VarianceScaling", "config": {"scale": 2.0, "mode": "fan_out", "distribution": "normal"}}


@keras.utils.register_keras_serializable(package="kpose")
class HardSigmoid(_L.Layer):
    """relu6(x + 3) / 6, MobileNetV3's gate (hard-swish is x * HardSigmoid(x)); TFLite fuses
    the hard-swish into one HARD_SWISH op.

    clip: compute it as clip(x / 6 + 0.5, 0, 1), the same function written for the TF.js and
    ONNX exports (kpose.deploy.graph): TF.js's converter would fuse a convolution, its bias and
    the relu6 form into _FusedHardSwish, an activation the TF.js backends lack, and tf2onnx's
    transpose optimiser fails on scalar constants (it logs a traceback and keeps transposes),
    hence constants of shape [1]. Not for TF itself: its oneDNN remapper fuses the [1]-constant
    relu6 form into a convolution it then cannot run.
    """

    def __init__(self, clip: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clip = bool(clip)

    def call(self, x):
        if self.clip:
            return tf.clip_by_value(x * tf.constant([1.0 / 6.0]) + tf.constant([0.5]), 0.0, 1.0)
        return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)

    def get_config(self) -> dict:
        return dict(super().get_config(), clip=self.clip)


# ---- ResNet-18 ---------------------------------------------------------------------------

def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, relu: bool):
    """[symmetric zero padding] -> bias-free convolution -> batch norm [-> ReLU], torchvision's."""
    if kernel > 1:
        x = _L.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    x = _L.Conv2D(filters, kernel, strides=stride, use_bias=False, kernel_initializer=_HE_OUT,
                  name=f"{name}_conv")(x)
    x = _L.BatchNormalization(epsilon=1e-5, name=f"{name}_bn")(x)
    return _L.Activation("relu", name=f"{name}_relu")(x) if relu else x


def resnet18(x):
    """ResNet-18 without its classifier: stride-32 features, 512 channels."""
    x = _conv_bn(x, 64, 7, 2, "conv1", relu=True)
    x = _L.ZeroPadding2D(1, name="pool1_pad")(x)
    x = _L.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    channels = 64
    for stage, filters in enumerate((64, 128, 256, 512), start=2):
        for block in (1, 2):
            name = f"conv{stage}_block{block}"
            stride = 2 if block == 1 and stage > 2 else 1
            shortcut = x
            if stride != 1 or channels != filters:
                shortcut = _conv_bn(x, filters, 1, stride, f"{name}_0", relu=False)
            y = _conv_bn(x, filters, 3, stride, f"{name}_1", relu=True)
            y = _conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
            x = _L.Add(name=f"{name}_add")([shortcut, y])
            x = _L.Activation("relu", name=f"{name}_out")(x)
            channels = filters
    return x


# ---- MobileNetV3-Small -------------------------------------------------------------------

# (expansion, output filters, kernel, stride, squeeze-excitation, hard-swish) per block,
# as tf_keras.applications.MobileNetV3Small (alpha 1.0, not minimalistic).
_MOBILENET_V3_SMALL = (
    (1, 16, 3, 2, True, False),
    (72 / 16, 24, 3, 2, False, False),
    (88 / 24, 24, 3, 1, False, False),
    (4, 40, 5, 2, True, True),
    (6, 40, 5, 1, True, True),
    (6, 40, 5, 1, True, True),
    (3, 48, 5, 1, True, True),
    (3, 48, 5, 1, True, True),
    (6, 96, 5, 2, True, True),
    (6, 96, 5, 1, True, True),
    (6, 96, 5, 1, True, True),
)


def _depth(v: float, divisor: int = 8) -> int:
    """Channels rounded to a multiple of 8, never below 90% of v (the MobileNet rule)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _act(x, hard_swish: bool, name: str):
    if not hard_swish:
        return _L.ReLU(name=f"{name}relu")(x)
    gate = HardSigmoid(name=f"{name}hard_sigmoid")(x)
    return _L.Multiply(name=f"{name}hard_swish")([x, gate])


def _bn(name: str):
    return _L.BatchNormalization(epsilon=1e-3, momentum=0.999, name=name)


def _mobilenet_v3_block(x, index: int, expansion: float, filters: int, kernel: int, stride: int,
                        se: bool, hard_swish: bool):
    prefix = f"expanded_conv_{index}/" if index else "expanded_conv/"
    shortcut, channels = x, int(x.shape[-1])
    expanded = _depth(channels * expansion)
    if index:
        x = _L.Conv2D(expanded, 1, padding="same", use_bias=False, name=prefix + "expand")(x)
        x = _act(_bn(prefix + "expand/BatchNorm")(x), hard_swish, prefix + "expand/")
    if stride == 2:
        # The applications' padding: k // 2 after, one less before on even sides.
        size = x.shape[1:3]
        before = [kernel // 2 - (1 if s is None else 1 - s % 2) for s in size]
        x = _L.ZeroPadding2D(((before[0], kernel // 2), (before[1], kernel // 2)),
                             name=prefix + "depthwise/pad")(x)
    x = _L.DepthwiseConv2D(kernel, strides=stride, padding="same" if stride == 1 else "valid",
                           use_bias=False, name=prefix + "depthwise")(x)
    x = _act(_bn(prefix + "depthwise/BatchNorm")(x), hard_swish, prefix + "depthwise/")
    if se:
        s = _L.GlobalAveragePooling2D(keepdims=True, name=prefix + "squeeze_excite/AvgPool")(x)
        s = _L.Conv2D(_depth(expanded * 0.25), 1, padding="same", name=prefix + "squeeze_excite/Conv")(s)
        s = _L.ReLU(name=prefix + "squeeze_excite/Relu")(s)
        s = _L.Conv2D(expanded, 1, padding="same", name=prefix + "squeeze_excite/Conv_1")(s)
        s = HardSigmoid(name=prefix + "squeeze_excite/hard_sigmoid")(s)
        x = _L.Multiply(name=prefix + "squeeze_excite/Mul")([x, s])
    x = _L.Conv2D(filters, 1, padding="same", use_bias=False, name=prefix + "project")(x)
    x = _bn(prefix + "project/BatchNorm")(x)
    if stride == 1 and channels == filters:
        x = _L.Add(name=prefix + "Add")([shortcut, x])
    return x


def mobilenet_v3_small(x):
    """MobileNetV3-Small (width 1.0) without its classifier: stride-32 features, 576 channels.
    Takes inputs in [-1, 1] (the applications' include_preprocessing=False)."""
    x = _L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="Conv")(x)
    x = _act(_bn("Conv/BatchNorm")(x), True, "Conv/")
    for i, block in enumerate(_MOBILENET_V3_SMALL):
        x = _mobilenet_v3_block(x, i, *block)
    x = _L.Conv2D(_depth(int(x.shape[-1]) * 6), 1, padding="same", use_bias=False, name="Conv_1")(x)
    return _act(_bn("Conv_1/BatchNorm")(x), True, "Conv_1/")


# ---- registry ----------------------------------------------------------------------------

def _resnet50(x):
    return keras.applications.ResNet50(include_top=False, weights=None, input_tensor=x).output


def _mobilenet_v2(x):
    return keras.applications.MobileNetV2(include_top=False, weights=None, input_tensor=x).output


@dataclass(frozen=True)
class Backbone:
    """A headless backbone: its builder (tensor -> stride-32 features), the input it expects,
    where ImageNet weights come from.

    normalization: "caffe" (BGR, minus the ImageNet means in 0..255), "imagenet" (RGB,
    (x / 255 - mean) / std) or "symmetric" (RGB, x / 127.5 - 1). imagenet: the
    tf_keras.applications model (weights="imagenet") whose weights this backbone takes by
    layer name, None where the applications have none.
    """

    build: Callable
    normalization: str
    imagenet: Callable[[], keras.Model] | None
    description: str


BACKBONES: dict[str, Backbone] = {
    "resnet50": Backbone(_resnet50, "caffe", lambda: keras.applications.ResNet50(
        include_top=False, weights="imagenet", input_shape=(224, 224, 3)), "tf_keras.applications.ResNet50"),
    "resnet18": Backbone(resnet18, "imagenet", None, "ResNet-18 (kpose; torchvision's structure)"),
    "mobilenetv2": Backbone(_mobilenet_v2, "symmetric", lambda: keras.applications.MobileNetV2(
        include_top=False, weights="imagenet", input_shape=(224, 224, 3)), "tf_keras.applications.MobileNetV2"),
    "mobilenetv3s": Backbone(mobilenet_v3_small, "symmetric", lambda: keras.applications.MobileNetV3Small(
        include_top=False, weights="imagenet", input_shape=(224, 224, 3), include_preprocessing=False),
        "MobileNetV3-Small (kpose; tf_keras.applications' layers and weights)"),
}

__all__ = ["BACKBONES", "Backbone", "HardSigmoid", "resnet18", "mobilenet_v3_small"]
