"""OpenPose on a MobileNetV2 backbone, as released by tf-pose-estimation, as a tf_keras model.

Architecture, as read from the released frozen graph (`openpose_mobilenet_v2_small.pb`,
ildoonet/tf-pose-estimation, Apache-2.0) and its network definition:

* backbone: MobileNetV2 (width 0.5 for "small") up to its 13th inverted-residual block
  (`expanded_conv_12`, stride 16): a 3x3/2 stem, then blocks of 1x1 expand, 3x3
  depthwise, 1x1 linear projection, each followed by a normalisation, ReLU6 after the
  first two, residual add when stride 1 and channels match; no biases.
* features: the stride-16 output is bilinearly resized (TF1 `ResizeBilinear`, no
  half-pixel centres, no corner alignment) to the stride-8 output of block 5 and the
  two are concatenated (16 + 48 = 64 channels for "small").
* six stages, each with a PAF branch (graph `L1`, 2 * limbs channels) and a heatmap
  branch (graph `L2`, keypoints + background) of five separable convolutions:
  depthwise (3x3, 3x3, 3x3, 1x1, 1x1; no bias) then pointwise + BatchNorm (no gamma),
  ReLU after the first four. Stages 2..6 read concat([pafs, heatmaps, features]) of the
  previous stage; the graph output `Openpose/concat_stage7` is [heatmaps, pafs] of stage 6.

Differences from the release, none of which change the function at batch size 1:

* the backbone's BatchNorms were frozen in training mode (`is_training=True`, no
  moving statistics in the graph), so each image is normalised by its own per-channel
  mean and variance. kpose builds them as `InstanceNormalization` (same numbers for
  one image, and independent of what else is in the batch);
* the last pointwise convolution of each branch carries its BatchNorm folded in
  (a convolution with bias), so the outputs are plain convolutions;
* the graph has no input normalisation (raw BGR 0..255 pixels go into the stem; the
  stem's per-image normalisation does that job): kpose's `input_normalization` layer is
  the identity, and the BGR -> RGB swap is folded into the stem kernel on loading.

Variant `small_bn` is the same network with BatchNormalization in the backbone: it takes
the release's weights (gamma and beta; moving statistics measured on training batches,
`kpose.models.batch_norm`), folds into its convolutions at export, and fine-tunes faster
and further than per-image statistics (docs/results.md). `small_bn_int8` is the same
function in a form int8 keeps (features scaled before the stages' concatenations, 1x1
depthwise scales folded): the variant to quantise a small_bn model in.

The release's weights are read into this builder by kpose.models.tf_pose_release.
"""
from __future__ import annotations

import numpy as np

from kpose._tf import keras, tf
from kpose.models.registry import OutputSpec, input_hw

DETECTION_STRIDE = 8
# The stride-16 backbone output is resized onto the stride-8 grid; tf-pose requires
# input sizes that are multiples of 16 so that resize is an exact 2x.
INPUT_STRIDE = 16
NUM_STAGES = 6
DEFAULT_INPUT_SIZE = (368, 432)
INPUT_NORMALIZATION = "input_normalization"
BN_EPSILON = 1e-3
GRAPH_OUTPUT = "Openpose/concat_stage7"

# width: MobileNetV2 depth multiplier; refine_width: multiplier of the stage convolutions
# (tf-pose networks.py: mobilenet_v2_small = w0.5_r0.5, mobilenet_v2_large = w1.4_r1.0).
# norm: the backbone's normalisation. "instance" is the release's (per-image statistics);
# "batch" is a plain BatchNormalization (batch statistics in training, moving averages
# at inference), which folds into the convolutions and quantises to int8, as per-image
# statistics do not (docs/results.md). "small_bn" takes the release's weights (its
# norms' gamma and beta; the moving averages are measured on training data when it starts).
# feature_scale: a constant factor on the backbone features before the stages read them.
# In int8 a concatenation has one range, and each stage reads concat([pafs, heatmaps,
# features]): the release's features span about [-70, 110], its maps [-1.3, 1.1], so one
# 8-bit step (0.7) would erase the maps the refinement stages refine. Scaled by 1/32 the
# features span about [-2, 3.4] (step 0.02); the stages' first depthwise kernels take the
# factor back, so the float function is the release's (adapt_weights).
# fold_1x1: no 1x1 depthwise layers in the stage branches (the release's 4th and 5th; a
# depthwise 1x1 without bias is a per-channel scale, folded into the pointwise kernel that
# follows). The release's scales span 5e-7..0.3 within a layer: in int8 the output of such
# a layer has one range, in which the small channels vanish before the next kernel
# (up to 35) multiplies them back; folded, each product is one weight, quantised per
# output channel.
# Only "small" is checked against a released graph.
# small_bn_int8 is small_bn in that form. It is for int8 export and QAT only: fine-tuned
# in float with Adam it learns less (quick start AP 0.371 against 0.446: the scaled and
# folded weights change the per-weight step sizes), so train small_bn and quantise with
# `--init <small_bn run> --set model.variant=small_bn_int8 --qat` (same function).
VARIANTS = {"small": {"width": 0.5, "refine_width": 0.5, "norm": "instance", "feature_scale": 1.0,
                      "fold_1x1": False},
            "small_bn": {"width": 0.5, "refine_width": 0.5, "norm": "batch", "feature_scale": 1.0,
                         "fold_1x1": False},
            "small_bn_int8": {"width": 0.5, "refine_width": 0.5, "norm": "batch", "feature_scale": 1 / 32,
                              "fold_1x1": True},
            "large": {"width": 1.4, "refine_width": 1.0, "norm": "instance", "feature_scale": 1.0,
                      "fold_1x1": False}}

# MobileNetV2 inverted-residual stages up to stride 16: (expansion, channels, repeats, stride).
_MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
_STEM_CHANNELS = 32
_STRIDE8_BLOCK = 5      # last block at stride 8 (graph `expanded_conv_5`, tf-pose `layer_7`)
BRANCHES = (("paf", "L1"), ("heatmap", "L2"))


@keras.utils.register_keras_serializable(package="kpose")
class InstanceNormalization(keras.layers.Layer):
    """Per-image, per-channel normalisation over height and width, then gamma * x + beta.

    What a BatchNorm frozen in training mode computes for a batch of one image.
    """

    def __init__(self, epsilon: float = BN_EPSILON, **kwargs) -> None:
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
        super().build(input_shape)

    def call(self, x):
        # Spelled out rather than tf.nn.moments + batch_normalization: on x86 TF's oneDNN
        # remapper fuses that pattern into _MklFusedInstanceNorm, which the TF.js converter
        # (and other exporters) cannot read. Same arithmetic.
        # Two short means (rows, then columns) rather than one over h*w pixels: a single
        # float32 sum of ~40k values in the thousands drifts by ~1e-3 and every runtime sums
        # in its own order; two short sums agree across TF, TFLite, ONNX and TF.js to ~1e-5.
        mean = tf.reduce_mean(tf.reduce_mean(x, axis=2, keepdims=True), axis=1, keepdims=True)
        centred = x - mean
        variance = tf.reduce_mean(tf.reduce_mean(centred * centred, axis=2, keepdims=True), axis=1,
                                  keepdims=True)
        return centred * (self.gamma * tf.math.rsqrt(variance + self.epsilon)) + self.beta

    def get_config(self) -> dict:
        return dict(super().get_config(), epsilon=self.epsilon)


@keras.utils.register_keras_serializable(package="kpose")
class ResizeBilinearLike(keras.layers.Layer):
    """Resize inputs[0] bilinearly to the height and width of inputs[1].

    TF1 `ResizeBilinear` semantics (no half-pixel centres, corners not aligned), as
    the release uses; keras' UpSampling2D / Resizing use half-pixel centres instead.
    """

    def call(self, inputs):
        x, reference = inputs
        size = reference.shape[1:3]
        size = size.as_list() if size.is_fully_defined() else tf.shape(reference)[1:3]
        # The op itself: tf.compat.v1.image.resize_bilinear wraps it with a deprecation warning.
        return tf.raw_ops.ResizeBilinear(images=x, size=size, align_corners=False, half_pixel_centers=False)

    def compute_output_shape(self, input_shape):
        x, reference = input_shape
        return tf.TensorShape([x[0], reference[1], reference[2], x[-1]])


def _make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNetV2's channel rounding: nearest multiple of `divisor`, never below 90%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def backbone_blocks(variant: str) -> tuple[int, list[dict]]:
    """(stem channels, [{expand, channels, stride, residual} per block]) of `variant`."""
    width = VARIANTS[variant]["width"]
    stem = _make_divisible(_STEM_CHANNELS * width)
    blocks, channels_in = [], stem
    for expansion, channels, repeats, stride in _MOBILENET_V2:
        out = _make_divisible(channels * width)
        for r in range(repeats):
            s = stride if r == 0 else 1
            expand = None if expansion == 1 else _make_divisible(channels_in * expansion)
            blocks.append({"expand": expand, "depthwise": expand or channels_in, "channels": out,
                           "stride": s, "residual": s == 1 and channels_in == out})
            channels_in = out
    return stem, blocks


def stage_layers(variant: str, stage: int) -> list[tuple[int, int | None]]:
    """(depthwise kernel, pointwise channels) of a branch's five separable convolutions;
    None for the last one, whose channels are the branch's outputs."""
    rw = VARIANTS[variant]["refine_width"]
    fourth = int(512 * rw) if stage == 1 else int(128 * rw)
    return [(3, int(128 * rw))] * 3 + [(1, fourth), (1, None)]


def stage_output_names(stage: int) -> tuple[str, str]:
    """(heatmaps, pafs) layer names of `stage` (1-based); the last stage's are the outputs."""
    return ("heatmaps", "pafs") if stage == NUM_STAGES else (f"stage{stage}_heatmaps", f"stage{stage}_pafs")




def _norm(variant: str, name: str) -> keras.layers.Layer:
    if VARIANTS[variant]["norm"] == "batch":
        return keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=name)
    return InstanceNormalization(name=name)


def _backbone(x, variant: str):
    """MobileNetV2 up to stride 16; returns (stride-8 features, stride-16 features)."""
    stem, blocks = backbone_blocks(variant)
    x = keras.layers.Conv2D(stem, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _norm(variant, "stem_norm")(x)
    x = keras.layers.ReLU(max_value=6.0, name="stem_relu6")(x)
    stride8 = None
    for b, blk in enumerate(blocks):
        inputs = x
        if blk["expand"]:
            x = keras.layers.Conv2D(blk["expand"], 1, use_bias=False, name=f"block{b}_expand")(x)
            x = _norm(variant, f"block{b}_expand_norm")(x)
            x = keras.layers.ReLU(max_value=6.0, name=f"block{b}_expand_relu6")(x)
        x = keras.layers.DepthwiseConv2D(3, strides=blk["stride"], padding="same", use_bias=False,
                                         name=f"block{b}_depthwise")(x)
        x = _norm(variant, f"block{b}_depthwise_norm")(x)
        x = keras.layers.ReLU(max_value=6.0, name=f"block{b}_depthwise_relu6")(x)
        x = keras.layers.Conv2D(blk["channels"], 1, use_bias=False, name=f"block{b}_project")(x)
        x = _norm(variant, f"block{b}_project_norm")(x)
        if blk["residual"]:
            x = keras.layers.Add(name=f"block{b}_add")([x, inputs])
        if b == _STRIDE8_BLOCK:
            stride8 = x
    return stride8, x


def _branch(x, variant: str, stage: int, branch: str, out_channels: int, out_name: str):
    layers = stage_layers(variant, stage)
    for j, (kernel, channels) in enumerate(layers, start=1):
        prefix = f"stage{stage}_{branch}{j}"
        if kernel > 1 or not VARIANTS[variant]["fold_1x1"]:
            x = keras.layers.DepthwiseConv2D(kernel, padding="same", use_bias=False, name=f"{prefix}_depthwise")(x)
        if channels is None:
            # The release's last BatchNorm is folded into this convolution's bias.
            return keras.layers.Conv2D(out_channels, 1, name=out_name)(x)
        x = keras.layers.Conv2D(channels, 1, use_bias=False, name=f"{prefix}_pointwise")(x)
        x = keras.layers.BatchNormalization(scale=False, epsilon=BN_EPSILON, name=f"{prefix}_bn")(x)
        x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
    raise AssertionError("unreachable: the last layer of a branch has no channel count")


def build_openpose_mobilenet_v2(
    variant: str = "small",
    num_keypoints: int = 19,
    num_limbs: int = 19,
    input_size: int | tuple | None = DEFAULT_INPUT_SIZE,
    training_outputs: bool = False,
    name: str | None = None,
) -> keras.Model:
    """Build tf-pose-estimation's OpenPose-MobileNetV2 `variant` as a functional tf_keras model.

    Input: RGB float pixels in 0..255, (h, w) multiples of 16 or None. Outputs at stride 8:
    "heatmaps" (num_keypoints channels) and "pafs" (2 * num_limbs channels, x then y per
    limb). As in OpenPose, stages 1-5 also predict a background channel (1 - the max of
    the parts; the release's 19th channel), which stage 2-6 inputs carry; the last stage
    outputs the parts only, so deployment and decoding see K channels. training_outputs: every stage's
    heatmaps and pafs in stage order (intermediate supervision), the last two being
    "heatmaps" and "pafs"; else only those two.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown openpose_mobilenet_v2 variant {variant!r}; known: {sorted(VARIANTS)}")
    h, w = input_hw(input_size, INPUT_STRIDE)
    inputs = keras.Input((h, w, 3), name="image")
    # Identity (the release feeds raw pixels); kept so every kpose model has the layer
    # where deployment and quantisation expect the input transform.
    x = keras.layers.DepthwiseConv2D(1, use_bias=True, trainable=False, name=INPUT_NORMALIZATION)(inputs)
    stride8, stride16 = _backbone(x, variant)
    up = ResizeBilinearLike(name="stride16_upsample")([stride16, stride8])
    features = keras.layers.Concatenate(name="features")([stride8, up])
    if VARIANTS[variant]["feature_scale"] != 1.0:
        features = keras.layers.Rescaling(VARIANTS[variant]["feature_scale"], name="features_scaled")(features)

    outputs, x = [], features
    for stage in range(1, NUM_STAGES + 1):
        heat_name, paf_name = stage_output_names(stage)
        pafs = _branch(x, variant, stage, "paf", 2 * num_limbs, paf_name)
        heatmaps = _branch(x, variant, stage, "heatmap", heatmap_channels(stage, num_keypoints), heat_name)
        outputs += [heatmaps, pafs]
        if stage < NUM_STAGES:
            # Channel order of the release: previous pafs, previous heatmaps, features.
            x = keras.layers.Concatenate(name=f"stage{stage + 1}_input")([pafs, heatmaps, features])
    model = keras.Model(inputs, outputs if training_outputs else outputs[-2:],
                        name=name or f"openpose_mobilenet_v2_{variant}")
    model.get_layer(INPUT_NORMALIZATION).set_weights([np.ones((1, 1, 3, 1), np.float32),
                                                      np.zeros(3, np.float32)])
    return model


def adapt_weights(source_variant: str, variant: str, weights: dict[str, list]) -> dict[str, list]:
    """The weights of a `source_variant` model ({layer name: weights}) for a `variant` model
    with the same function: per-image norms become batch norms with their gamma and beta
    (moving mean 0, variance 1: the caller measures them on data), the first depthwise
    kernel of every stage branch takes the ratio of the two feature scales on its feature
    channels (the last ones of its input), and 1x1 depthwise scales are folded into the
    kernel that follows where `variant` has none."""
    out = dict(weights)
    if VARIANTS[source_variant]["norm"] == "instance" and VARIANTS[variant]["norm"] == "batch":
        for name in [n for n in out if n == "stem_norm" or (n.startswith("block") and n.endswith("_norm"))]:
            gamma, beta = out[name]
            out[name] = [gamma, beta, np.zeros_like(gamma), np.ones_like(gamma)]
    ratio = VARIANTS[source_variant]["feature_scale"] / VARIANTS[variant]["feature_scale"]
    _, blocks = backbone_blocks(variant)
    features = blocks[_STRIDE8_BLOCK]["channels"] + blocks[-1]["channels"]
    fold = VARIANTS[variant]["fold_1x1"] and not VARIANTS[source_variant]["fold_1x1"]
    for stage in range(1, NUM_STAGES + 1):
        names = dict(zip(("heatmap", "paf"), stage_output_names(stage)))
        for branch, _ in BRANCHES:
            first = f"stage{stage}_{branch}1_depthwise"
            if ratio != 1.0 and first in out:
                kernel = out[first][0].copy()
                kernel[:, :, -features:, :] *= ratio
                out[first] = [kernel]
            for j, (kernel_size, channels) in enumerate(stage_layers(variant, stage), start=1):
                depthwise = f"stage{stage}_{branch}{j}_depthwise"
                if not fold or kernel_size != 1 or depthwise not in out:
                    continue
                scale = out.pop(depthwise)[0][0, 0, :, 0]
                following = names[branch] if channels is None else f"stage{stage}_{branch}{j}_pointwise"
                kernel, *rest = out[following]
                out[following] = [kernel * scale[None, None, :, None], *rest]
    return out


def heatmap_channels(stage: int, num_keypoints: int) -> int:
    """Heatmap channels of a stage: parts + background before the last stage, parts at the last."""
    return num_keypoints + (stage < NUM_STAGES)


def openpose_mobilenet_v2_outputs(variant: str, num_keypoints: int, num_limbs: int) -> tuple[OutputSpec, ...]:
    """The supervised outputs of `build_openpose_mobilenet_v2(..., training_outputs=True)`, in order."""
    specs = []
    for stage in range(1, NUM_STAGES + 1):
        heat_name, paf_name = stage_output_names(stage)
        last = stage == NUM_STAGES
        specs += [OutputSpec(heat_name, "heatmaps", DETECTION_STRIDE, heatmap_channels(stage, num_keypoints),
                             inference=last),
                  OutputSpec(paf_name, "pafs", DETECTION_STRIDE, 2 * num_limbs, inference=last)]
    return tuple(specs)


__all__ = ["build_openpose_mobilenet_v2", "openpose_mobilenet_v2_outputs", "adapt_weights",
           "InstanceNormalization", "ResizeBilinearLike", "VARIANTS", "INPUT_STRIDE", "DEFAULT_INPUT_SIZE"]
