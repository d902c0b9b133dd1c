"""EfficientNet and EfficientNet-Lite stems: the first stages (down to stride 8) of the
compound-scaled networks (Tan & Le 2019), with the layer names of the EfficientPose
releases so their weights can be assigned by layer name.

Scaling rules (EfficientNet's): a stage's filters are multiplied by the width
coefficient and rounded to a multiple of 8 (never below 90% of the unrounded value);
its repeats are multiplied by the depth coefficient and rounded up. EfficientNet-Lite
keeps the stem at 32 filters and the first stage at one block, uses ReLU6 and has no
squeeze-excitation.

Two naming schemes, as in the releases:
* "keras" (EfficientPose RT, I-IV): `stem_conv_res1`, `block2a_expand_conv_res1`, ...;
  the suffix (`_res1` high resolution, `_res2` low resolution) names the stream;
* "lite" (the Lite releases, converted from TF graphs): `efficientnet-lite2/model/
  blocks_3/conv2d/Conv2D_0`, ..., where TF numbered repeated op types inside a scope.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from kpose._tf import keras

ESWISH_BETA = 1.25

# (width, depth) coefficients of EfficientNet B0-B7 and EfficientNet-Lite0-4.
SCALING = {
    "b0": (1.0, 1.0), "b1": (1.0, 1.1), "b2": (1.1, 1.2), "b3": (1.2, 1.4),
    "b4": (1.4, 1.8), "b5": (1.6, 2.2), "b6": (1.8, 2.6), "b7": (2.0, 3.1),
    "lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2), "lite3": (1.2, 1.4),
    "lite4": (1.4, 1.8),
}
STEM_FILTERS = 32
# EfficientNet-B0's first three stages: (expand ratio, kernel, stride, output filters,
# repeats). Stage 2 ends at stride 4, stage 3 at stride 8.
B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2))
SE_RATIO = 0.25  # squeeze width, of the block's input filters

BACKBONE_INIT = {"class_name": "VarianceScaling",
                 "config": {"scale": 2.0, "mode": "fan_out", "distribution": "normal"}}


@dataclass(frozen=True)
class Block:
    """One MBConv block: `name` is 'block2a' (keras naming) or 'blocks_3' (lite naming)."""

    name: str
    expand: int
    kernel: int
    stride: int
    filters_in: int
    filters_out: int


def is_lite(net: str) -> bool:
    """EfficientNet-Lite (ReLU6, no squeeze-excitation, fixed stem)."""
    return net.startswith("lite")


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Filters scaled by `width`, rounded to a multiple of `divisor` (EfficientNet's rule)."""
    scaled = filters * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * scaled else out


def round_repeats(repeats: int, depth: float) -> int:
    """Repeats scaled by `depth`, rounded up."""
    return int(math.ceil(depth * repeats))


def stem_blocks(net: str, stages: int) -> tuple[int, list[Block]]:
    """(stem filters, MBConv blocks) of the first `stages` stages of `net` ('b0'..'b7', 'lite0'..'lite4')."""
    if net not in SCALING:
        raise ValueError(f"unknown EfficientNet {net!r}; known: {', '.join(SCALING)}")
    width, depth = SCALING[net]
    lite = is_lite(net)
    stem = STEM_FILTERS if lite else round_filters(STEM_FILTERS, width)
    blocks, filters_in = [], stem
    for s, (expand, kernel, stride, filters, repeats) in enumerate(B0_STAGES[:stages]):
        filters_out = round_filters(filters, width)
        n = repeats if lite and s == 0 else round_repeats(repeats, depth)
        for r in range(n):
            name = f"blocks_{len(blocks)}" if lite else f"block{s + 1}{chr(ord('a') + r)}"
            blocks.append(Block(name, expand, kernel, stride if r == 0 else 1, filters_in, filters_out))
            filters_in = filters_out
    return stem, blocks


def activation(x, kind: str, name: str):
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
    """Layer names of a Lite release: a name depends on how many layers of its type the
    scope created before it (conv2d, conv2d_1, ...)."""
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


_KERAS_ROLES = {"expand_conv": "expand_conv", "expand_bn": "expand_bn", "expand_act": "expand_activation",
                "dw": "dwconv", "dw_bn": "bn", "dw_act": "activation", "project_conv": "project_conv",
                "project_bn": "project_bn", "add": "add", "se_squeeze": "se_squeeze", "se_reduce": "se_reduce",
                "se_reduce_act": "se_reduce_swish", "se_expand": "se_expand", "se_excite": "se_excite"}


def _names(net: str, suffix: str, block: Block | None) -> dict[str, str]:
    """Layer name per role for the stem (block None) or one block."""
    if is_lite(net):
        scope = f"efficientnet-{net}/model/" + ("stem" if block is None else block.name)
        if block is None:
            return _lite_names(scope, ["stem_conv", "stem_bn", "stem_act"])
        roles = (["expand_conv", "expand_bn", "expand_act"] if block.expand != 1 else []) + [
            "dw", "dw_bn", "dw_act", "project_conv", "project_bn"]
        return _lite_names(scope, roles)
    if block is None:
        return {"stem_conv": f"stem_conv{suffix}", "stem_bn": f"stem_bn{suffix}",
                "stem_act": f"stem_activation{suffix}"}
    return {role: f"{block.name}_{part}{suffix}" for role, part in _KERAS_ROLES.items()}


def efficientnet_stem(x, net: str, stages: int, suffix: str = "_res1", last_residual: bool = True):
    """The first `stages` stages of EfficientNet `net` on `x`; returns the last block's output.

    suffix: the keras naming's stream suffix (ignored by Lite naming).
    last_residual: False leaves out the residual add of the last block, as the
      releases' low-resolution streams do (they end at that block's projection).
    """
    lite = is_lite(net)
    act = "relu6" if lite else "swish"
    conv_kw = {"padding": "same", "use_bias": False, "kernel_initializer": BACKBONE_INIT}
    stem, blocks = stem_blocks(net, stages)

    names = _names(net, suffix, None)
    x = keras.layers.Conv2D(stem, 3, strides=2, name=names["stem_conv"], **conv_kw)(x)
    x = keras.layers.BatchNormalization(name=names["stem_bn"])(x)
    x = activation(x, act, names["stem_act"])

    for i, b in enumerate(blocks):
        names = _names(net, suffix, b)
        inputs = x
        expanded = b.filters_in * b.expand
        if b.expand != 1:
            x = keras.layers.Conv2D(expanded, 1, name=names["expand_conv"], **conv_kw)(x)
            x = keras.layers.BatchNormalization(name=names["expand_bn"])(x)
            x = activation(x, act, names["expand_act"])
        x = keras.layers.DepthwiseConv2D(b.kernel, strides=b.stride, padding="same", use_bias=False,
                                         depthwise_initializer=BACKBONE_INIT, name=names["dw"])(x)
        x = keras.layers.BatchNormalization(name=names["dw_bn"])(x)
        x = activation(x, act, names["dw_act"])
        if not lite:
            se = keras.layers.GlobalAveragePooling2D(keepdims=True, name=names["se_squeeze"])(x)
            se = keras.layers.Conv2D(max(1, int(b.filters_in * SE_RATIO)), 1, padding="same",
                                     kernel_initializer=BACKBONE_INIT, name=names["se_reduce"])(se)
            se = activation(se, act, names["se_reduce_act"])
            se = keras.layers.Conv2D(expanded, 1, padding="same", activation="sigmoid",
                                     kernel_initializer=BACKBONE_INIT, name=names["se_expand"])(se)
            x = keras.layers.Multiply(name=names["se_excite"])([x, se])
        x = keras.layers.Conv2D(b.filters_out, 1, name=names["project_conv"], **conv_kw)(x)
        x = keras.layers.BatchNormalization(name=names["project_bn"])(x)
        last = i == len(blocks) - 1
        if b.stride == 1 and b.filters_in == b.filters_out and (last_residual or not last):
            x = keras.layers.Add(name=names["add"])([x, inputs])
    return x
