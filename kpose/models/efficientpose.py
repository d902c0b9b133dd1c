"""EfficientPose (Groos et al., 2020) RT, I-IV and the Lite variants as plain tf_keras
functional models, from one builder parameterised by the paper's compound scaling.

Structure (read from the official releases, daniegr/EfficientPose: the Keras configs of
RT, RT_LITE, I, I_LITE, the TFLite graphs of II, II_LITE, and for III and IV, which have
no released weights, the layer lists of the repository's PyTorch conversions):

* RT and the Lite variants: one stream, the first three stages (stride 8) of
  EfficientNet-B0 (RT) or EfficientNet-Lite0/2/4 (RT_LITE, I_LITE, II_LITE).
* I-IV: two streams concatenated at stride 8: a high-resolution one, the first three
  stages of EfficientNet-B2/B4/B5/B7 on the input, and a low-resolution one, the first
  two stages of EfficientNet-B0/B0/B1/B3 on the 2x2 average-pooled input (layer
  `input_res2`). The releases' low-resolution stream ends at its last block's
  projection, without that block's residual add.
* Three detection passes (pass 1 skeleton PAFs, passes 2 and 3 keypoint maps), each
  1/1/2/3/4 MobileDenseNet blocks (RT/I/II/III/IV; RT_LITE/I_LITE/II_LITE 1/1/2) of
  three MBConvs (as wide as the high-resolution stream's stride-8 stage, expansion 6,
  5x5 depthwise) whose outputs are densely concatenated; from the second block on, a
  block's output is added to its input (`passN_blockB_skip_*`). Passes 2 and 3 take
  the previous pass's output concatenated with the stream features.
* Three fixed stride-2 bilinear transposed convolutions bring the pass-3 maps to the
  input resolution.

The layer names are the releases' so weights can be assigned by name (see
`kpose.models.official`). Differences from the releases, none of which change the
function computed:

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
"""
from __future__ import annotations

import numpy as np

from kpose._tf import keras
from kpose.models.efficientnet_stem import SE_RATIO, activation, efficientnet_stem, is_lite, stem_blocks
from kpose.models.registry import OutputSpec, input_hw

# Stride of the stream features and the three detection passes; the upscaled output
# is stride 1 but carries no finer information than this grid.
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


# The paper's compound scaling: variant -> (input size, high-resolution EfficientNet,
# low-resolution EfficientNet or None for one stream, MobileDenseNet blocks per pass).
SCALING = {
    "rt": (224, "b0", None, 1),
    "i": (256, "b2", "b0", 1),
    "ii": (368, "b4", "b0", 2),
    "iii": (480, "b5", "b1", 3),
    "iv": (600, "b7", "b3", 4),
    "rt_lite": (224, "lite0", None, 1),
    "i_lite": (256, "lite2", None, 1),
    "ii_lite": (368, "lite4", None, 2),
}
MBCONVS_PER_BLOCK = 3
DETECTION_EXPAND = 6
DETECTION_KERNEL = 5


def _variant(size: int, high: str, low: str | None, blocks: int) -> dict:
    lite = is_lite(high)
    _, high_blocks = stem_blocks(high, 3)
    return {
        "input_size": size,
        "input_name": "input_1_0" if lite else "input_res1",
        # The releases' preprocessing: Keras preprocess_input "torch" mode, "tf" for Lite.
        "normalization": "symmetric" if lite else "imagenet",
        "high": high,
        "low": low,
        "detection": {
            "blocks": blocks,
            # The passes keep the width of the high-resolution stream's stride-8 stage.
            "filters": high_blocks[-1].filters_out,
            "expand": DETECTION_EXPAND,
            "kernel": DETECTION_KERNEL,
            "se_ratio": None if lite else SE_RATIO,
            "activation": "relu6" if lite else "eswish",
        },
        "upscale_layers": 3,
    }


VARIANTS: dict[str, dict] = {name: _variant(*spec) for name, spec in SCALING.items()}

# Official MPII model: 14 limbs -> 28 PAF channels.
DEFAULT_NUM_LIMBS = 14

OUTPUT_NAMES = ("pass1_skeleton_pafs", "pass2_detection1_confs",
                "pass3_detection2_confs", "upscaled_confs")


def _mbconv(x, cfg: dict, prefix: str):
    """One MBConv of a detection pass; `prefix` like 'pass1_block1_mbconv1_skeleton'."""
    act = cfg["activation"]
    expanded = cfg["filters"] * cfg["expand"]
    x = keras.layers.Conv2D(expanded, 1, padding="same", use_bias=False, name=f"{prefix}_conv1")(x)
    x = keras.layers.BatchNormalization(name=f"{prefix}_conv1_bn")(x)
    x = activation(x, act, f"{prefix}_conv1_{act}")
    x = keras.layers.DepthwiseConv2D(cfg["kernel"], padding="same", use_bias=False, name=f"{prefix}_dconv1")(x)
    x = keras.layers.BatchNormalization(name=f"{prefix}_dconv1_bn")(x)
    x = activation(x, act, f"{prefix}_dconv1_{act}")
    if cfg["se_ratio"]:
        se = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}_se_se_squeeze_lambda")(x)
        se = keras.layers.Conv2D(max(1, int(cfg["filters"] * cfg["se_ratio"])), 1, padding="same",
                                 name=f"{prefix}_se_se_squeeze_conv")(se)
        se = activation(se, act, f"{prefix}_se_se_squeeze_{act}")
        se = keras.layers.Conv2D(expanded, 1, padding="same", name=f"{prefix}_se_se_excite_conv")(se)
        se = keras.layers.Activation("sigmoid", name=f"{prefix}_se_se_excite_sigmoid")(se)
        x = keras.layers.Multiply(name=f"{prefix}_se_se_multiply")([se, x])
    x = keras.layers.Conv2D(cfg["filters"], 1, padding="same", use_bias=False, name=f"{prefix}_conv2")(x)
    return keras.layers.BatchNormalization(name=f"{prefix}_conv2_bn")(x)


def _detection_pass(x, cfg: dict, pass_index: int, tag: str):
    """MobileDenseNet blocks: within a block each MBConv's output is concatenated with all
    earlier ones; from the second block on, the block's output is added to its input."""
    for b in range(1, cfg["blocks"] + 1):
        dense = None
        for j in range(1, MBCONVS_PER_BLOCK + 1):
            prefix = f"pass{pass_index}_block{b}_mbconv{j}_{tag}"
            y = _mbconv(x if dense is None else dense, cfg, prefix)
            dense = y if dense is None else keras.layers.Concatenate(name=f"{prefix}_dense")([y, dense])
        x = dense if b == 1 else keras.layers.Add(name=f"pass{pass_index}_block{b}_skip_{tag}")([dense, x])
    return x


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
    """Build EfficientPose `variant` (one of VARIANTS) as a functional tf_keras model.

    input_size: int or (h, w), multiples of 8 (None for any size); input is RGB float 0..255.
    training_outputs: if True the outputs are, in this order and with these names,
      pass1_skeleton_pafs (stride 8, 2*num_limbs), pass2_detection1_confs (stride 8, K),
      pass3_detection2_confs (stride 8, K), upscaled_confs (stride 1, K); else only
      upscaled_confs. Channel order is whatever the targets use (kpose: MPII16).
    normalization: "default" (the variant's: "imagenet", "symmetric" for the Lite ones),
      one of NORMALIZATIONS, or None for a model that takes already-normalised input.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientPose variant {variant!r}; known: {', '.join(VARIANTS)}")
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

    features = [efficientnet_stem(x, cfg["high"], 3, "_res1")]
    if cfg["low"] is not None:
        # Per-channel normalisation commutes with the average pooling, so pooling the
        # normalised image is the release's pooling of its (normalised) input.
        low = keras.layers.AveragePooling2D(2, strides=2, padding="same", name="input_res2")(x)
        features.append(efficientnet_stem(low, cfg["low"], 2, "_res2", last_residual=False))
    n_concat = 0

    def concat(tensors):
        nonlocal n_concat
        n_concat += 1
        return keras.layers.Concatenate(name=f"concatenate_{n_concat}")(tensors)

    det = cfg["detection"]
    x = features[0] if len(features) == 1 else concat(features)
    skeleton = _detection_pass(x, det, 1, "skeleton")
    detection1 = _detection_pass(concat([skeleton, *features]), det, 2, "detection1")
    detection2 = _detection_pass(concat([detection1, *features]), det, 3, "detection2")

    confs = keras.layers.Conv2D(num_keypoints, 1, padding="same", name="pass3_detection2_confs")(detection2)
    up = confs
    n_up = cfg["upscale_layers"]
    for k in range(1, n_up + 1):
        # Fixed bilinear upsampling, as in the releases (their three kernels are exactly
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
