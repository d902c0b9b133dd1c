"""EfficientPose RT / RT_LITE (Groos et al., 2020) as a plain tf_keras functional model.

The architecture and layer names follow the official release (daniegr/EfficientPose,
`EfficientPoseRT.h5`, `EfficientPoseRT_LITE.h5`) so its weights can be assigned by
layer name (see `kpose.models.official`). Differences from the release, none of which
change the function computed:

* the custom `Swish` layer is `Activation("swish")`; E-swish (beta = 1.25) is
  `Activation("swish")` followed by `Rescaling(1.25)`, which carries the official name;
* the SE squeeze Lambdas (a spatial mean) are `GlobalAveragePooling2D(keepdims=True)`;
* the identity Lambdas in front of the residual adds (inference-time drop-connect)
  are left out;
* input normalisation is inside the graph (`input_normalization`, a frozen 1x1
  depthwise convolution computing x * scale + offset per channel), so the model
  takes RGB float pixels in 0..255. A convolution rather than a `Rescaling` layer
  because it quantises as one int8 op (a Rescaling is a MUL and an ADD with no
  range between them, which QAT cannot give and the converter leaves in float).

Geometry: stem and backbone downsample by 8; the three detection passes work at
stride 8; three stride-2 transposed convolutions bring the confidence maps back to
the input resolution (stride 1).
"""
from __future__ import annotations

import numpy as np

from kpose._tf import keras
from kpose.models.registry import OutputSpec, input_hw

ESWISH_BETA = 1.25
# Stride of the backbone features and the three detection passes; the upscaled
# output is stride 1 but carries no finer information than this grid.
DETECTION_STRIDE = 8
INPUT_NORMALIZATION = "input_normalization"

# Per-channel input transforms, applied to RGB pixels in 0..255:
# "imagenet" = (x / 255 - mean) / std (torch-style), "symmetric" = x / 127.5 - 1.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = {
    "imagenet": {"type": "imagenet", "input_range": [0, 255], "color": "RGB",
                 "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                 "formula": "(x / 255 - mean) / std"},
    "symmetric": {"type": "symmetric", "input_range": [0, 255], "color": "RGB",
                  "formula": "x / 127.5 - 1"},
}

def normalization_scale_offset(kind: str) -> tuple[list[float], list[float]]:
    """Per-channel (scale, offset) with normalised = x * scale + offset for RGB 0..255."""
    if kind == "imagenet":
        return ([1.0 / (255.0 * s) for s in IMAGENET_STD],
                [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])
    if kind == "symmetric":
        return [1.0 / 127.5] * 3, [-1.0] * 3
    raise ValueError(f"unknown normalization {kind!r}; known: {sorted(NORMALIZATIONS)}")


# EfficientNet MBConv stages up to stride 8:
# (official block name, expand ratio, kernel, stride, output filters).
_B0_STRIDE8_BLOCKS = (
    ("block1a", 1, 3, 1, 16),
    ("block2a", 6, 3, 2, 24),
    ("block2b", 6, 3, 1, 24),
    ("block3a", 6, 5, 2, 40),
    ("block3b", 6, 5, 1, 40),
)

# EfficientPose I-IV are not listed: their releases add a second, low-resolution
# backbone (`*_res2` layers, merged by an extra concatenation) and deeper EfficientNet
# stages, so they are not a change of numbers in this config.
VARIANTS: dict[str, dict] = {
    "rt": {
        "input_size": 224,
        "input_name": "input_res1",
        "normalization": "imagenet",
        "backbone": {
            "naming": "keras_res1",        # stem_conv_res1, block2a_expand_conv_res1, ...
            "stem_filters": 32,
            "blocks": _B0_STRIDE8_BLOCKS,
            "se_ratio": 0.25,              # of the block's input filters
            "activation": "swish",
        },
        "detection": {
            "blocks": 3,                   # MobileDenseNet: MBConvs with dense concatenation
            "filters": 40,
            "expand": 6,
            "kernel": 5,
            "se_ratio": 0.25,              # of `filters`
            "activation": "eswish",
        },
        "upscale_layers": 3,
    },
    "rt_lite": {
        "input_size": 224,
        "input_name": "input_1_0",
        "normalization": "symmetric",
        "backbone": {
            "naming": "tf_lite0",          # efficientnet-lite0/model/blocks_1/conv2d/Conv2D_0, ...
            "stem_filters": 32,
            "blocks": _B0_STRIDE8_BLOCKS,
            "se_ratio": None,
            "activation": "relu6",
        },
        "detection": {
            "blocks": 3,
            "filters": 40,
            "expand": 6,
            "kernel": 5,
            "se_ratio": None,
            "activation": "relu6",
        },
        "upscale_layers": 3,
    },
}

# Official MPII model: 14 limbs -> 28 PAF channels.
DEFAULT_NUM_LIMBS = 14

OUTPUT_NAMES = ("pass1_skeleton_pafs", "pass2_detection1_confs",
                "pass3_detection2_confs", "upscaled_confs")

_BACKBONE_INIT = {"class_name": "VarianceScaling",
                  "config": {"scale": 2.0, "mode": "fan_out", "distribution": "normal"}}




def _activation(x, kind: str, name: str):
    """Apply an activation whose output layer carries `name`."""
    if kind == "swish":
        return keras.layers.Activation("swish", name=name)(x)
    if kind == "relu6":
        return keras.layers.ReLU(max_value=6.0, name=name)(x)
    if kind == "eswish":
        # beta * x * sigmoid(x) from two standard layers, so no custom object is needed
        # to load, convert or export the model.
        x = keras.layers.Activation("swish", name=name + "_swish")(x)
        return keras.layers.Rescaling(ESWISH_BETA, name=name)(x)
    raise ValueError(f"unknown activation {kind!r}")


def _lite_names(scope: str, roles: list[str]) -> dict[str, str]:
    """Layer names of the official Lite release (a TF graph converted to Keras).

    TF numbered repeated op types inside a scope (conv2d, conv2d_1, ...), so a name
    depends on how many layers of its type the block created before it.
    """
    ops = {"conv": ("conv2d", "Conv2D"), "bn": ("tpu_batch_normalization", "FusedBatchNormV3"),
           "act": ("Relu6", None), "dw": ("depthwise_conv2d", "depthwise")}
    counts: dict[str, int] = {}
    names = {}
    for role in roles:
        kind = role.split("_")[-1]
        scope_name, op = ops[kind]
        n = counts.get(kind, 0)
        counts[kind] = n + 1
        base = scope_name if n == 0 else f"{scope_name}_{n}"
        names[role] = f"{scope}/{base}_0" if op is None else f"{scope}/{base}/{op}_0"
    names["add"] = f"{scope}/Add_0"
    return names


def _block_names(naming: str, index: int, block: str, has_expand: bool) -> dict[str, str]:
    """Official layer name for each role of backbone block `index` (`block` = 'block2a', ...)."""
    roles = (["expand_conv", "expand_bn", "expand_act"] if has_expand else []) + [
        "dw", "dw_bn", "dw_act", "project_conv", "project_bn"]
    if naming == "tf_lite0":
        return _lite_names(f"efficientnet-lite0/model/blocks_{index}", roles)
    keras_roles = {"expand_conv": "expand_conv", "expand_bn": "expand_bn", "expand_act": "expand_activation",
                   "dw": "dwconv", "dw_bn": "bn", "dw_act": "activation",
                   "project_conv": "project_conv", "project_bn": "project_bn", "add": "add"}
    return {role: f"{block}_{suffix}_res1" for role, suffix in keras_roles.items()}


def _backbone(x, cfg: dict):
    act = cfg["activation"]
    conv_kw = {"padding": "same", "use_bias": False, "kernel_initializer": _BACKBONE_INIT}

    if cfg["naming"] == "tf_lite0":
        names = _lite_names("efficientnet-lite0/model/stem", ["stem_conv", "stem_bn", "stem_act"])
    else:
        names = {"stem_conv": "stem_conv_res1", "stem_bn": "stem_bn_res1", "stem_act": "stem_activation_res1"}
    x = keras.layers.Conv2D(cfg["stem_filters"], 3, strides=2, name=names["stem_conv"], **conv_kw)(x)
    x = keras.layers.BatchNormalization(name=names["stem_bn"])(x)
    x = _activation(x, act, names["stem_act"])

    filters_in = cfg["stem_filters"]
    for i, (block, expand, kernel, stride, filters_out) in enumerate(cfg["blocks"]):
        names = _block_names(cfg["naming"], i, block, expand != 1)
        inputs = x
        expanded = filters_in * expand
        if expand != 1:
            x = keras.layers.Conv2D(expanded, 1, name=names["expand_conv"], **conv_kw)(x)
            x = keras.layers.BatchNormalization(name=names["expand_bn"])(x)
            x = _activation(x, act, names["expand_act"])
        x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                         depthwise_initializer=_BACKBONE_INIT, name=names["dw"])(x)
        x = keras.layers.BatchNormalization(name=names["dw_bn"])(x)
        x = _activation(x, act, names["dw_act"])
        if cfg["se_ratio"]:
            se = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{block}_se_squeeze_res1")(x)
            se = keras.layers.Conv2D(max(1, int(filters_in * cfg["se_ratio"])), 1, padding="same",
                                     kernel_initializer=_BACKBONE_INIT, name=f"{block}_se_reduce_res1")(se)
            se = _activation(se, act, f"{block}_se_reduce_swish_res1")
            se = keras.layers.Conv2D(expanded, 1, padding="same", activation="sigmoid",
                                     kernel_initializer=_BACKBONE_INIT, name=f"{block}_se_expand_res1")(se)
            x = keras.layers.Multiply(name=f"{block}_se_excite_res1")([x, se])
        x = keras.layers.Conv2D(filters_out, 1, name=names["project_conv"], **conv_kw)(x)
        x = keras.layers.BatchNormalization(name=names["project_bn"])(x)
        if stride == 1 and filters_in == filters_out:
            x = keras.layers.Add(name=names["add"])([x, inputs])
        filters_in = filters_out
    return x


def _mbconv(x, cfg: dict, prefix: str):
    """One MBConv of a detection pass; `prefix` like 'pass1_block1_mbconv1_skeleton'."""
    act = cfg["activation"]
    suffix = "eswish" if act == "eswish" else act
    expanded = cfg["filters"] * cfg["expand"]
    x = keras.layers.Conv2D(expanded, 1, padding="same", use_bias=False, name=f"{prefix}_conv1")(x)
    x = keras.layers.BatchNormalization(name=f"{prefix}_conv1_bn")(x)
    x = _activation(x, act, f"{prefix}_conv1_{suffix}")
    x = keras.layers.DepthwiseConv2D(cfg["kernel"], padding="same", use_bias=False, name=f"{prefix}_dconv1")(x)
    x = keras.layers.BatchNormalization(name=f"{prefix}_dconv1_bn")(x)
    x = _activation(x, act, f"{prefix}_dconv1_{suffix}")
    if cfg["se_ratio"]:
        se = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}_se_se_squeeze_lambda")(x)
        se = keras.layers.Conv2D(max(1, int(cfg["filters"] * cfg["se_ratio"])), 1, padding="same",
                                 name=f"{prefix}_se_se_squeeze_conv")(se)
        se = _activation(se, act, f"{prefix}_se_se_squeeze_{suffix}")
        se = keras.layers.Conv2D(expanded, 1, padding="same", name=f"{prefix}_se_se_excite_conv")(se)
        se = keras.layers.Activation("sigmoid", name=f"{prefix}_se_se_excite_sigmoid")(se)
        x = keras.layers.Multiply(name=f"{prefix}_se_se_multiply")([se, x])
    x = keras.layers.Conv2D(cfg["filters"], 1, padding="same", use_bias=False, name=f"{prefix}_conv2")(x)
    return keras.layers.BatchNormalization(name=f"{prefix}_conv2_bn")(x)


def _detection_pass(x, cfg: dict, pass_index: int, tag: str):
    """MobileDenseNet: each MBConv's output is concatenated with all earlier ones."""
    dense = None
    for j in range(1, cfg["blocks"] + 1):
        prefix = f"pass{pass_index}_block1_mbconv{j}_{tag}"
        y = _mbconv(x if dense is None else dense, cfg, prefix)
        dense = y if dense is None else keras.layers.Concatenate(name=f"{prefix}_dense")([y, dense])
    return dense


def bilinear_upsampling_kernel(size: int, channels: int) -> np.ndarray:
    """Transposed-convolution kernel (size, size, channels, channels) doing per-channel bilinear upsampling."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1.0 - np.abs(np.arange(size) - center) / factor
    kernel = np.zeros((size, size, channels, channels), np.float32)
    for c in range(channels):
        kernel[:, :, c, c] = np.outer(ramp, ramp)
    return kernel


def build_efficientpose(
    variant: str = "rt",
    num_keypoints: int = 16,
    input_size: int | tuple | None = 224,
    training_outputs: bool = False,
    num_limbs: int = DEFAULT_NUM_LIMBS,
    normalization: str | None = "default",
    name: str | None = None,
) -> keras.Model:
    """Build EfficientPose `variant` ("rt" or "rt_lite") as a functional tf_keras model.

    input_size: int or (h, w), multiples of 8 (None for any size); input is RGB float 0..255.
    training_outputs: if True the outputs are, in this order and with these names,
      pass1_skeleton_pafs (stride 8, 2*num_limbs), pass2_detection1_confs (stride 8, K),
      pass3_detection2_confs (stride 8, K), upscaled_confs (stride 1, K); else only
      upscaled_confs. Channel order is whatever the targets use (kpose: MPII16).
    normalization: "default" (the variant's: "imagenet" for rt, "symmetric" for rt_lite),
      one of NORMALIZATIONS, or None for a model that takes already-normalised input.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientPose variant {variant!r}; known: {sorted(VARIANTS)}")
    cfg = VARIANTS[variant]
    h, w = input_hw(input_size, DETECTION_STRIDE)
    if normalization == "default":
        normalization = cfg["normalization"]

    inputs = keras.Input((h, w, 3), name=cfg["input_name"])
    x = inputs
    if normalization is not None:
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; known: {sorted(NORMALIZATIONS)}")
        x = keras.layers.DepthwiseConv2D(1, use_bias=True, trainable=False,
                                         name=INPUT_NORMALIZATION)(x)

    features = _backbone(x, cfg["backbone"])
    det = cfg["detection"]
    skeleton = _detection_pass(features, det, 1, "skeleton")
    x = keras.layers.Concatenate(name="concatenate_1")([skeleton, features])
    detection1 = _detection_pass(x, det, 2, "detection1")
    x = keras.layers.Concatenate(name="concatenate_2")([detection1, features])
    detection2 = _detection_pass(x, det, 3, "detection2")

    confs = keras.layers.Conv2D(num_keypoints, 1, padding="same", name="pass3_detection2_confs")(detection2)
    up = confs
    n_up = cfg["upscale_layers"]
    for k in range(1, n_up + 1):
        # Fixed bilinear upsampling, as in the release (its three kernels are exactly
        # bilinear_upsampling_kernel): training them only mixes keypoint channels and
        # costs a full-resolution filter gradient each step.
        up = keras.layers.Conv2DTranspose(
            num_keypoints, 4, strides=2, padding="same", trainable=False,
            name="upscaled_confs" if k == n_up else f"upscaled_deconv{k}")(up)

    if training_outputs:
        pafs = keras.layers.Conv2D(2 * num_limbs, 1, padding="same", name="pass1_skeleton_pafs")(skeleton)
        confs1 = keras.layers.Conv2D(num_keypoints, 1, padding="same", name="pass2_detection1_confs")(detection1)
        outputs = [pafs, confs1, confs, up]
    else:
        outputs = up
    model = keras.Model(inputs, outputs, name=name or f"efficientpose_{variant}")

    if normalization is not None:
        scale, offset = normalization_scale_offset(normalization)
        model.get_layer(INPUT_NORMALIZATION).set_weights(
            [np.asarray(scale, np.float32).reshape(1, 1, 3, 1), np.asarray(offset, np.float32)])
    # Set after construction so the layer config does not embed the kernel array.
    kernel = bilinear_upsampling_kernel(4, num_keypoints)
    for k in range(1, n_up + 1):
        layer = model.get_layer("upscaled_confs" if k == n_up else f"upscaled_deconv{k}")
        layer.kernel.assign(kernel)
    return model


def efficientpose_outputs(variant: str, num_keypoints: int, num_limbs: int) -> tuple[OutputSpec, ...]:
    """The supervised outputs of `build_efficientpose(..., training_outputs=True)`, in order."""
    return (
        OutputSpec("pass1_skeleton_pafs", "pafs", DETECTION_STRIDE, 2 * num_limbs),
        OutputSpec("pass2_detection1_confs", "heatmaps", DETECTION_STRIDE, num_keypoints),
        OutputSpec("pass3_detection2_confs", "heatmaps", DETECTION_STRIDE, num_keypoints),
        OutputSpec("upscaled_confs", "heatmaps", 1, num_keypoints, inference=True),
    )
