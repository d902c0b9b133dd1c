"""OpenPose (Cao et al., 2017) and Lightweight OpenPose (Osokin, 2018) as tf_keras functional models.

Both are bottom-up: every stage predicts keypoint heatmaps and part affinity fields
(PAFs, an (x, y) pair per limb) at stride 8, and each later stage refines the previous
stage's prediction from the shared features. OpenPose's heatmaps traditionally carry
an extra background channel; here `num_keypoints` is the heatmap channel count and
the caller decides whether one of them is background.

Structure follows the authors' releases (read for facts only):

* lightweight: Daniil-Osokin/lightweight-human-pose-estimation.pytorch
  (`models/with_mobilenet.py`): dilated MobileNet v1 to conv5_5 (stride 8; conv4_2
  keeps stride 1 and conv5_1 is dilated 2), the CPM block, an initial stage and one
  refinement stage of five (1x1, 3x3, 3x3 dilated 2) residual blocks. Two changes that
  do not alter the function class: convolutions followed by batch norm have no bias
  (it is redundant there), and stride-2 convolutions pad "same" (TF pads one pixel at
  the end, PyTorch's padding=1 one at each side).
* vgg19: the CMU COCO model (`pose_deploy_linevec.prototxt`, 52,311,446 weights):
  VGG-19 conv1_1..conv4_2, conv4_3_CPM, conv4_4_CPM and six two-branch stages. Layer
  names are the prototxt's (branch L1 = PAFs, L2 = heatmaps) except the outputs.

Input: RGB float pixels in 0..255. Normalisation is in the graph, as in
`kpose.models.efficientpose`: a frozen 1x1 depthwise convolution `input_normalization`
computing (x - 128) / 256, the normalisation both reference models were trained with
(they read BGR, but a transform equal on every channel is the same in either order).
"""
from __future__ import annotations

import numpy as np

from kpose._tf import keras
from kpose.models.efficientpose import INPUT_NORMALIZATION
from kpose.models.registry import OutputSpec, input_hw

OUTPUT_STRIDE = 8
NORMALIZATION = {"type": "openpose", "input_range": [0, 255], "color": "RGB",
                 "formula": "(x - 128) / 256"}
_NORM_SCALE, _NORM_OFFSET = 1.0 / 256.0, -0.5

# Dilated MobileNet v1 as (name, output filters, stride, dilation); conv1 is a full 3x3
# convolution (32 filters, stride 2), the rest depthwise-separable blocks.
_MOBILENET_BLOCKS = (
    ("conv2_1", 64, 1, 1),
    ("conv2_2", 128, 2, 1),
    ("conv3_1", 128, 1, 1),
    ("conv3_2", 256, 2, 1),
    ("conv4_1", 256, 1, 1),
    ("conv4_2", 512, 1, 1),   # stride 1 (MobileNet: 2) keeps the stride-8 grid
    ("conv5_1", 512, 1, 2),   # dilation restores the receptive field lost above
    ("conv5_2", 512, 1, 1),
    ("conv5_3", 512, 1, 1),
    ("conv5_4", 512, 1, 1),
    ("conv5_5", 512, 1, 1),
)

LIGHTWEIGHT_VARIANTS: dict[str, dict] = {
    "default": {"channels": 128, "refinement_stages": 1, "refinement_blocks": 5,
                "head_hidden": 512},
}

# VGG-19 conv1_1..conv4_2 as (name, filters); "pool" marks a 2x2 max pooling.
_VGG_LAYERS = (
    ("conv1_1", 64), ("conv1_2", 64), ("pool1_stage1", None),
    ("conv2_1", 128), ("conv2_2", 128), ("pool2_stage1", None),
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256), ("pool3_stage1", None),
    ("conv4_1", 512), ("conv4_2", 512),
)

VGG19_VARIANTS: dict[str, dict] = {
    "default": {"stages": 6, "channels": 128, "stage1_hidden": 512, "kernel": 7, "stage_convs": 5},
}

# ReLU layers are He-initialised so the plain (no batch norm) VGG stacks keep their
# activation scale from the first step; outputs keep the Keras default.
_RELU_INIT = "he_normal"
# He for depthwise kernels: their fan is kh*kw (one input channel per filter), which Keras's
# fan_out gives for a (kh, kw, C, 1) kernel; "he_normal" would use kh*kw*C and shrink every
# depthwise layer's activations by ~sqrt(C).
_DEPTHWISE_INIT = keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal")
# The authors trained with PyTorch's batch-norm defaults.
_BN = {"momentum": 0.9, "epsilon": 1e-5}




def _check_counts(num_keypoints: int, num_limbs: int) -> None:
    if int(num_keypoints) < 1:
        raise ValueError(f"num_keypoints={num_keypoints!r}: need at least 1 heatmap channel")
    if int(num_limbs) < 1:
        raise ValueError(f"num_limbs={num_limbs!r}: need at least 1 limb (2 PAF channels each)")


def _variant(variants: dict, variant: str, family: str) -> dict:
    if variant not in variants:
        raise ValueError(f"variant {variant!r} of {family}: known variants are {sorted(variants)}")
    return variants[variant]


def _stage_specs(stages: int, num_keypoints: int, num_limbs: int) -> tuple[OutputSpec, ...]:
    specs = []
    for s in range(1, stages + 1):
        last = s == stages
        specs.append(OutputSpec("heatmaps" if last else f"stage{s}_heatmaps", "heatmaps",
                                OUTPUT_STRIDE, int(num_keypoints), inference=last))
        specs.append(OutputSpec("pafs" if last else f"stage{s}_pafs", "pafs",
                                OUTPUT_STRIDE, 2 * int(num_limbs), inference=last))
    return tuple(specs)


def openpose_lightweight_outputs(variant: str = "default", num_keypoints: int = 18,
                                 num_limbs: int = 19) -> tuple[OutputSpec, ...]:
    """Declared outputs, in stage order: stage1_heatmaps, stage1_pafs, ..., heatmaps, pafs."""
    cfg = _variant(LIGHTWEIGHT_VARIANTS, variant, "openpose_lightweight")
    _check_counts(num_keypoints, num_limbs)
    return _stage_specs(1 + cfg["refinement_stages"], num_keypoints, num_limbs)


def openpose_vgg19_outputs(variant: str = "default", num_keypoints: int = 19,
                           num_limbs: int = 19) -> tuple[OutputSpec, ...]:
    """Declared outputs, in stage order: stage1_heatmaps, stage1_pafs, ..., heatmaps, pafs."""
    cfg = _variant(VGG19_VARIANTS, variant, "openpose_vgg19")
    _check_counts(num_keypoints, num_limbs)
    return _stage_specs(cfg["stages"], num_keypoints, num_limbs)


def _input(h, w):
    """Image input and the frozen in-graph normalisation (weights set by `_set_normalization`)."""
    inputs = keras.Input((h, w, 3), name="image")
    x = keras.layers.DepthwiseConv2D(1, use_bias=True, trainable=False, name=INPUT_NORMALIZATION)(inputs)
    return inputs, x


def _set_normalization(model: keras.Model) -> None:
    # Set after construction so the layer config does not embed the arrays.
    model.get_layer(INPUT_NORMALIZATION).set_weights(
        [np.full((1, 1, 3, 1), _NORM_SCALE, np.float32), np.full((3,), _NORM_OFFSET, np.float32)])


def _conv(x, filters: int, kernel: int, name: str, relu: bool = True, dilation: int = 1):
    """Convolution with bias and an optional fused ReLU (no batch norm)."""
    return keras.layers.Conv2D(filters, kernel, padding="same", dilation_rate=dilation,
                               activation="relu" if relu else None,
                               kernel_initializer=_RELU_INIT if relu else "glorot_uniform",
                               name=name)(x)


def _conv_bn_relu(x, filters: int, kernel: int, name: str, stride: int = 1, dilation: int = 1):
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", dilation_rate=dilation,
                            use_bias=False, kernel_initializer=_RELU_INIT, name=name)(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn", **_BN)(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _separable(x, filters: int, name: str, stride: int = 1, dilation: int = 1, bn: bool = True):
    """MobileNet v1 block: 3x3 depthwise then 1x1, each with BN + ReLU (bn=False: ELU, no BN)."""
    x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", dilation_rate=dilation,
                                     use_bias=False, depthwise_initializer=_DEPTHWISE_INIT, name=f"{name}_dw")(x)
    if bn:
        x = keras.layers.BatchNormalization(name=f"{name}_dw_bn", **_BN)(x)
        x = keras.layers.ReLU(name=f"{name}_dw_relu")(x)
    else:
        x = keras.layers.ELU(name=f"{name}_dw_elu")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, kernel_initializer=_RELU_INIT, name=f"{name}_pw")(x)
    if bn:
        x = keras.layers.BatchNormalization(name=f"{name}_pw_bn", **_BN)(x)
        return keras.layers.ReLU(name=f"{name}_pw_relu")(x)
    return keras.layers.ELU(name=f"{name}_pw_elu")(x)


def _head(x, hidden: int, out: int, stage: int, kind: str, last: bool):
    """1x1 hidden conv + ReLU, then the 1x1 output conv carrying the output's name."""
    x = _conv(x, hidden, 1, f"stage{stage}_{kind}_hidden")
    return _conv(x, out, 1, kind if last else f"stage{stage}_{kind}", relu=False)


def build_openpose_lightweight(
    variant: str = "default",
    num_keypoints: int = 18,
    num_limbs: int = 19,
    input_size: int | tuple | None = (368, 368),
    training_outputs: bool = False,
    name: str | None = None,
) -> keras.Model:
    """Build Lightweight OpenPose (Osokin 2018): RGB 0..255 in, [heatmaps, pafs] at stride 8 out.

    input_size: int or (h, w), multiples of 8, or None for any size.
    training_outputs: if True every stage's heatmaps and PAFs in stage order (see
      `openpose_lightweight_outputs`); else only the last stage's, named "heatmaps", "pafs".
    With 19 heatmaps and 19 limbs this is the paper's network: 4.1M weights, 9 G
    multiply-adds at 368x368 (see `kpose.models.flops`).
    """
    cfg = _variant(LIGHTWEIGHT_VARIANTS, variant, "openpose_lightweight")
    _check_counts(num_keypoints, num_limbs)
    h, w = input_hw(input_size, OUTPUT_STRIDE)
    channels, n_pafs = cfg["channels"], 2 * int(num_limbs)
    stages = 1 + cfg["refinement_stages"]

    inputs, x = _input(h, w)
    x = _conv_bn_relu(x, 32, 3, "conv1", stride=2)
    for block, filters, stride, dilation in _MOBILENET_BLOCKS:
        x = _separable(x, filters, block, stride=stride, dilation=dilation)

    # CPM: align to `channels`, a residual over three ELU separable convs, a 3x3.
    x = _conv(x, channels, 1, "cpm_align")
    trunk = x
    for i in range(1, 4):
        trunk = _separable(trunk, channels, f"cpm_trunk{i}", bn=False)
    x = keras.layers.Add(name="cpm_residual")([x, trunk])
    features = _conv(x, channels, 3, "cpm_conv")

    outputs = []
    x = features
    for i in range(1, 4):
        x = _conv(x, channels, 3, f"stage1_trunk{i}")
    heatmaps = _head(x, cfg["head_hidden"], int(num_keypoints), 1, "heatmaps", stages == 1)
    pafs = _head(x, cfg["head_hidden"], n_pafs, 1, "pafs", stages == 1)
    outputs += [heatmaps, pafs]

    for s in range(2, stages + 1):
        x = keras.layers.Concatenate(name=f"stage{s}_input")([features, heatmaps, pafs])
        for b in range(1, cfg["refinement_blocks"] + 1):
            prefix = f"stage{s}_block{b}"
            initial = _conv(x, channels, 1, f"{prefix}_initial")
            y = _conv_bn_relu(initial, channels, 3, f"{prefix}_trunk1")
            y = _conv_bn_relu(y, channels, 3, f"{prefix}_trunk2", dilation=2)
            x = keras.layers.Add(name=f"{prefix}_residual")([initial, y])
        heatmaps = _head(x, channels, int(num_keypoints), s, "heatmaps", s == stages)
        pafs = _head(x, channels, n_pafs, s, "pafs", s == stages)
        outputs += [heatmaps, pafs]

    model = keras.Model(inputs, outputs if training_outputs else outputs[-2:],
                        name=name or f"openpose_lightweight_{variant}")
    _set_normalization(model)
    return model


def build_openpose_vgg19(
    variant: str = "default",
    num_keypoints: int = 19,
    num_limbs: int = 19,
    input_size: int | tuple | None = None,
    training_outputs: bool = False,
    name: str | None = None,
) -> keras.Model:
    """Build CMU OpenPose (Cao et al. 2017, COCO model): RGB 0..255 in, [heatmaps, pafs] at stride 8 out.

    input_size: int or (h, w), multiples of 8, or None for any size.
    training_outputs: if True every stage's heatmaps and PAFs in stage order (see
      `openpose_vgg19_outputs`); else only the last stage's, named "heatmaps", "pafs".
    Each refinement stage reads concat(previous PAFs, previous heatmaps, features), the
    prototxt's order. With 19 heatmaps and 19 limbs: 52,311,446 weights plus the 6 of
    `input_normalization`.
    """
    cfg = _variant(VGG19_VARIANTS, variant, "openpose_vgg19")
    _check_counts(num_keypoints, num_limbs)
    h, w = input_hw(input_size, OUTPUT_STRIDE)
    channels, n_pafs, stages = cfg["channels"], 2 * int(num_limbs), cfg["stages"]

    inputs, x = _input(h, w)
    for layer, filters in _VGG_LAYERS:
        if filters is None:
            x = keras.layers.MaxPooling2D(2, 2, name=layer)(x)
        else:
            x = _conv(x, filters, 3, layer)
    x = _conv(x, 256, 3, "conv4_3_CPM")
    features = _conv(x, channels, 3, "conv4_4_CPM")

    # Branch L1 = PAFs, L2 = heatmaps (the prototxt's suffixes).
    branches = (("L1", "pafs", n_pafs), ("L2", "heatmaps", int(num_keypoints)))
    predictions: dict[str, object] = {}
    outputs = []
    for s in range(1, stages + 1):
        last = s == stages
        if s == 1:
            stage_input = features
        else:
            stage_input = keras.layers.Concatenate(name=f"concat_stage{s}")(
                [predictions["pafs"], predictions["heatmaps"], features])
        for suffix, kind, out in branches:
            y = stage_input
            if s == 1:
                for i in range(1, 4):
                    y = _conv(y, channels, 3, f"conv5_{i}_CPM_{suffix}")
                y = _conv(y, cfg["stage1_hidden"], 1, f"conv5_4_CPM_{suffix}")
            else:
                for i in range(1, cfg["stage_convs"] + 1):
                    y = _conv(y, channels, cfg["kernel"], f"Mconv{i}_stage{s}_{suffix}")
                y = _conv(y, channels, 1, f"Mconv{cfg['stage_convs'] + 1}_stage{s}_{suffix}")
            predictions[kind] = _conv(y, out, 1, kind if last else f"stage{s}_{kind}", relu=False)
        outputs += [predictions["heatmaps"], predictions["pafs"]]

    model = keras.Model(inputs, outputs if training_outputs else outputs[-2:],
                        name=name or f"openpose_vgg19_{variant}")
    _set_normalization(model)
    return model
