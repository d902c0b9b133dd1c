"""SimplePose (Li, Su and Wang, AAAI 2020, "Simple Pose: Rethinking and Improving a Bottom-up
Approach for Multi-Person Pose Estimation") as a tf_keras functional model.

Not to be confused with Simple Baselines (Xiao, Wu and Wei, ECCV 2018), Xiao et al.'s
*top-down* model that parts of the literature also call "simple pose": kpose names that one
`simplebaseline_*` (kpose.models.simplebaseline) and this *bottom-up* one `simplepose_*`.

The network is the paper's IMHN, a stack of hourglasses with multi-scale supervision.
Structure follows the paper and the authors' release (hellojialee/Improved-Body-Parts,
`models/posenet.py`, `models/layers_transposed.py`; read for facts only):

* stem to stride 4: a 7x7 stride-2 convolution (channels / 4), a bottleneck residual
  (channels / 2), 2x2 max pooling, another residual, then a chain of dilated 3x3
  convolutions (dilations 3, 3, 4, 4, 5, 5) whose output is concatenated with its input
  (channels in all);
* each hourglass has 4 max-pool / nearest-upsample levels (depth 4: features at strides 4,
  8, 16, 32 and 64); the width grows by `increase` channels per level (the release's 256 +
  128 per level), every block is a bottleneck residual (1x1, 3x3, 1x1, batch norm, leaky
  ReLU 0.01), and each upsampled branch is refined by a 3x3 convolution before the skip add;
* multi-scale supervision: at each of the 5 scales of every stack, two 3x3 convolutions
  and a squeeze-excitation block (reduction 16; the channel attention the release puts in
  front of each regression) feed 1x1 convolutions to the keypoint heatmaps and to one
  limb heatmap per limb (kpose.codecs.limb_heatmap). Between stacks, every scale's
  predictions and features are mapped back (1x1 convolutions) and added to the next
  hourglass's input (stride 4) and to its output at that scale (residual across stacks).

Outputs (training_outputs): per stack, per scale (stride 4, 8, ..., 64), heatmaps then
limb_heatmaps (`simplepose_outputs`); the deployed model keeps the last stack's stride-4
pair, named "heatmaps" and "limb_heatmaps". What kpose leaves out of the release: its two
background channels (person mask and inverted keypoints; kpose's heatmaps carry no
background) and its redundant limbs (30 for 18 keypoints): the limbs are the skeleton's,
a skeleton with extra limbs gives extra limb maps.

Variants: "default" is the paper's network (4 stacks, 256 channels, +128 per level;
with COCO-17 heads 95,961,750 weights in the deployed network, 227.8 G multiply-adds at
512x512; 128,980,950 with the training-only heads of the coarser scales). "small" (2 stacks,
32 channels, +16 per level, 2 dilated convolutions: 0.77 M weights, 0.47 G multiply-adds at
256x256) has the same layers at a width that trains on two CPU cores (recipe
`simplepose_hourglass`). "tiny" (1 stack, 16 channels, depth 2: 3 scales) is the test
suite's stand-in for the recipe: every kind of layer of the others, in far fewer layers. Only
the stride-4 path reaches the deployed outputs: the coarser scales' heads and their carries
into the next stack are supervised in training only.

Input: RGB float pixels in 0..255; the frozen `input_normalization` convolution computes
x / 255 (the release feeds images in [0, 1]). Initialisation: He for the convolutions that
batch norms follow, normal(0, 0.001) for the output convolutions (the release's), so the maps
start near 0 and training does not first spend hundreds of steps unlearning random maps
(measured on the small variant, one batch at 128x128, focal L2: correlation with the targets
0.39 after 50 steps and 0.88 after 300, against 0.01 and 0.11 with Keras's default init).
"""
from __future__ import annotations

import numpy as np

from kpose._tf import keras
from kpose.models.efficientpose import INPUT_NORMALIZATION
from kpose.models.registry import OutputSpec, input_hw

OUTPUT_STRIDE = 4
MAX_DEPTH = 4                                               # the paper's hourglass: 5 scales, 4 .. 64
INPUT_STRIDE = OUTPUT_STRIDE * 2 ** MAX_DEPTH               # every variant takes multiples of 64
REFERENCE_INPUT_SIZE = (512, 512)                           # the paper's input
SE_REDUCTION = 16
# The squeeze keeps at least this many channels (the paper's widths give 16): at 16 or 32
# channels C / 16 would gate every channel through 1 or 2 numbers (with a ReLU there, an
# untrained tiny network's gate came out constant: a zero-range tensor XNNPACK's int8 refuses).
SE_MIN_CHANNELS = 8
LEAKY_SLOPE = 0.01                                          # the release's LeakyReLU

# depth: hourglass levels (depth + 1 supervised scales); dilations: the stem's dilated convolutions.
VARIANTS: dict[str, dict] = {
    "default": {"stacks": 4, "channels": 256, "increase": 128, "depth": 4, "dilations": (3, 3, 4, 4, 5, 5)},
    "small": {"stacks": 2, "channels": 32, "increase": 16, "depth": 4, "dilations": (3, 4)},
    # The test suite's: every kind of layer of the others, as few of them as that takes
    # (per-recipe export gates convert the network at every precision; with 2 stacks they
    # took 1.7x as long as Lightweight OpenPose's, with 1 as long).
    "tiny": {"stacks": 1, "channels": 16, "increase": 8, "depth": 2, "dilations": (3,)},
}

_INIT = "he_normal"
# Initial batch-norm scale of the branches added to a skip path (residual blocks, the
# hourglass's upsampled branch). At 1, dozens of adds in sequence double the activations'
# variance at each one, far beyond the untrained batch norms' (0, 1) statistics in inference
# and int8 calibration; at 0 (Goyal et al. 2017) the folded kernel is all zeros, which int8
# converters cannot give a scale; small keeps each add near the identity.
BRANCH_GAMMA = 0.1
_BN = {"momentum": 0.9, "epsilon": 1e-5}                    # PyTorch's batch-norm defaults
# The maps start near 0, where almost all of every target is: the release's normal(0, 0.001).
# A config, not an instance: each layer deserialises its own (a shared instance draws the same values).
_HEAD_INIT = {"class_name": "RandomNormal", "config": {"stddev": 0.001}}


def _variant(variant: str) -> dict:
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} of simplepose: known variants are {sorted(VARIANTS)}")
    return VARIANTS[variant]


def scales(variant: str) -> tuple[int, ...]:
    """Strides of a variant's supervised scales: 4, 8, ..., 4 * 2^depth."""
    return tuple(OUTPUT_STRIDE * 2 ** i for i in range(_variant(variant)["depth"] + 1))


def _check_counts(num_keypoints: int, num_limbs: int) -> None:
    if int(num_keypoints) < 1:
        raise ValueError(f"num_keypoints={num_keypoints!r}: need at least 1 heatmap channel")
    if int(num_limbs) < 1:
        raise ValueError(f"num_limbs={num_limbs!r}: need at least 1 limb (one limb heatmap each)")


def _names(stack: int, stride: int, last: bool) -> tuple[str, str]:
    if last and stride == OUTPUT_STRIDE:
        return "heatmaps", "limb_heatmaps"
    return f"stack{stack}_s{stride}_heatmaps", f"stack{stack}_s{stride}_limb_heatmaps"


def simplepose_outputs(variant: str = "default", num_keypoints: int = 17,
                       num_limbs: int = 19) -> tuple[OutputSpec, ...]:
    """Declared outputs: for each stack, for each scale (stride 4, 8, ...: `scales`), heatmaps
    then limb_heatmaps; only the last stack's stride-4 pair is an inference output."""
    stacks = _variant(variant)["stacks"]
    _check_counts(num_keypoints, num_limbs)
    specs = []
    for s in range(1, stacks + 1):
        for stride in scales(variant):
            last = s == stacks and stride == OUTPUT_STRIDE
            hm, lm = _names(s, stride, s == stacks)
            specs.append(OutputSpec(hm, "heatmaps", stride, int(num_keypoints), inference=last))
            specs.append(OutputSpec(lm, "limb_heatmaps", stride, int(num_limbs), inference=last))
    return tuple(specs)


def _act(x, name: str):
    return keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_lrelu")(x)


def _conv_bn(x, filters: int, kernel: int, name: str, stride: int = 1, dilation: int = 1, act: bool = True,
             gamma: float = 1.0):
    """Convolution without bias (batch norm follows), batch norm (scale starting at `gamma`),
    optional leaky ReLU."""
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", dilation_rate=dilation,
                            use_bias=False, kernel_initializer=_INIT, name=name)(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn", gamma_initializer=keras.initializers.Constant(gamma),
                                        **_BN)(x)
    return _act(x, name) if act else x


def _residual(x, filters: int, name: str):
    """Bottleneck residual (1x1 to filters / 2, 3x3, 1x1 to filters); a 1x1 projection on the
    skip when the width changes; leaky ReLU after the add."""
    y = _conv_bn(x, filters // 2, 1, f"{name}_reduce")
    y = _conv_bn(y, filters // 2, 3, f"{name}_conv")
    y = _conv_bn(y, filters, 1, f"{name}_expand", act=False, gamma=BRANCH_GAMMA)
    skip = x if x.shape[-1] == filters else _conv_bn(x, filters, 1, f"{name}_skip", act=False)
    return _act(keras.layers.Add(name=f"{name}_add")([y, skip]), name)


def _squeeze_excite(x, name: str):
    """Channel attention: global mean -> 1x1 (C / 16, at least SE_MIN_CHANNELS) + leaky ReLU ->
    1x1 (C) + sigmoid -> scale. 1x1 convolutions rather than dense layers: the same function on
    the [1, 1, C] mean."""
    channels = x.shape[-1]
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = keras.layers.Conv2D(max(channels // SE_REDUCTION, SE_MIN_CHANNELS), 1, name=f"{name}_reduce")(s)
    s = _act(s, f"{name}_reduce")
    s = keras.layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_excite")(s)
    return keras.layers.Multiply(name=f"{name}_scale")([x, s])


def _hourglass(x, level: int, depth: int, channels: int, increase: int, name: str, features: list):
    """One hourglass from `level` down to `depth`; appends the bottom features of each lower
    level (strides 8, 16, ...) to `features` (deepest first) and returns the level's output."""
    width, lower = channels + increase * level, channels + increase * (level + 1)
    skip = _residual(x, width, f"{name}_l{level}_skip")
    low = keras.layers.MaxPooling2D(2, 2, name=f"{name}_l{level}_pool")(x)
    low = _residual(low, lower, f"{name}_l{level}_down")
    if level == depth - 1:
        low = _residual(low, lower, f"{name}_l{level}_bottom")
    else:
        low = _hourglass(low, level + 1, depth, channels, increase, name, features)
    features.append(low)
    up = _residual(low, width, f"{name}_l{level}_up")
    up = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_l{level}_upsample")(up)
    up = _conv_bn(up, width, 3, f"{name}_l{level}_refine", gamma=BRANCH_GAMMA)   # a branch added to `skip`
    return keras.layers.Add(name=f"{name}_l{level}_add")([skip, up])


def build_simplepose(
    variant: str = "default",
    num_keypoints: int = 17,
    num_limbs: int = 19,
    input_size: int | tuple | None = REFERENCE_INPUT_SIZE,
    training_outputs: bool = False,
    name: str | None = None,
) -> keras.Model:
    """Build SimplePose's IMHN (Li et al. 2020): RGB 0..255 in, [heatmaps, limb_heatmaps] at stride 4 out.

    input_size: int or (h, w), multiples of 64 (the paper's four poolings below stride 4; every
      variant takes the same sizes), or None.
    training_outputs: if True every stack's heatmaps and limb heatmaps at every scale, in the
      order of `simplepose_outputs`; else only the last stack's stride-4 pair.
    """
    cfg = _variant(variant)
    _check_counts(num_keypoints, num_limbs)
    h, w = input_hw(input_size, INPUT_STRIDE)
    channels, increase, stacks, depth = cfg["channels"], cfg["increase"], cfg["stacks"], cfg["depth"]
    strides = scales(variant)
    widths = [channels + increase * i for i in range(depth + 1)]

    inputs = keras.Input((h, w, 3), name="image")
    x = keras.layers.DepthwiseConv2D(1, use_bias=True, trainable=False, name=INPUT_NORMALIZATION)(inputs)
    x = _conv_bn(x, channels // 4, 7, "stem_conv", stride=2)
    x = _residual(x, channels // 2, "stem_res1")
    x = keras.layers.MaxPooling2D(2, 2, name="stem_pool")(x)
    x = _residual(x, channels // 2, "stem_res2")
    y = x
    for i, dilation in enumerate(cfg["dilations"], 1):
        y = _conv_bn(y, channels // 2, 3, f"stem_dilated{i}", dilation=dilation)
    x = keras.layers.Concatenate(name="stem_concat")([x, y])

    outputs, carry = [], None
    for s in range(1, stacks + 1):
        lower: list = []
        features = [_hourglass(x, 0, depth, channels, increase, f"hg{s}", lower)] + lower[::-1]
        if carry is not None:   # the previous stack's maps and features, at every scale
            features = [keras.layers.Add(name=f"hg{s}_s{stride}_carry")([f, c])
                        for f, c, stride in zip(features, carry, strides)]
        carry = []
        for f, width, stride in zip(features, widths, strides):
            prefix = f"stack{s}_s{stride}"
            f = _conv_bn(f, channels, 3, f"{prefix}_head1")
            f = _conv_bn(f, channels, 3, f"{prefix}_head2")
            f = _squeeze_excite(f, f"{prefix}_se")
            hm_name, lm_name = _names(s, stride, s == stacks)
            heatmaps = keras.layers.Conv2D(int(num_keypoints), 1, kernel_initializer=_HEAD_INIT, name=hm_name)(f)
            limb_maps = keras.layers.Conv2D(int(num_limbs), 1, kernel_initializer=_HEAD_INIT, name=lm_name)(f)
            outputs += [heatmaps, limb_maps]
            if s < stacks:
                maps = keras.layers.Concatenate(name=f"{prefix}_maps")([heatmaps, limb_maps])
                back = keras.layers.Conv2D(width, 1, name=f"{prefix}_merge_maps")(maps)
                feat = keras.layers.Conv2D(width, 1, name=f"{prefix}_merge_features")(f)
                carry.append(keras.layers.Add(name=f"{prefix}_merge")([back, feat]))
        if s < stacks:
            x = keras.layers.Add(name=f"stack{s + 1}_input")([x, carry[0]])

    last = outputs[-2 * len(strides):][:2]   # the last stack's stride-4 pair
    model = keras.Model(inputs, outputs if training_outputs else last, name=name or f"simplepose_{variant}")
    # Set after construction so the layer config does not embed the arrays.
    model.get_layer(INPUT_NORMALIZATION).set_weights(
        [np.full((1, 1, 3, 1), 1.0 / 255.0, np.float32), np.zeros((3,), np.float32)])
    return model
