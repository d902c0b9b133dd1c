"""Parameters and multiply-adds of an EfficientPose variant from its scaling config, without
building it (a Keras build of EfficientPose IV takes tens of seconds on a laptop CPU).

The counts follow `kpose.models.flops`: parameters are every weight of the built model
(batch-norm statistics, the frozen input normalisation and upscaling included, as
`count_parameters`); multiply-adds are those of every convolution at batch 1 (frozen
ones included, transposed ones per input pixel, as `count_flops`). The tests check both
equal the built model's for every variant.
"""
from __future__ import annotations

import math

from kpose.models.efficientnet_stem import SE_RATIO, stem_blocks
from kpose.models.efficientpose import DETECTION_STRIDE, MBCONVS_PER_BLOCK, VARIANTS
from kpose.models.flops import CostTally, variant_grid


def _stream(t: CostTally, net: str, stages: int, h: int, w: int) -> tuple[int, int, int]:
    """Count one EfficientNet stream; returns (channels, h, w) of its output."""
    stem, blocks = stem_blocks(net, stages)
    lite = net.startswith("lite")
    h, w = math.ceil(h / 2), math.ceil(w / 2)
    t.add(h * w, 3 * 3 * 3 * stem, stem, norm=True)
    for b in blocks:
        expanded = b.filters_in * b.expand
        if b.expand != 1:
            t.add(h * w, b.filters_in * expanded, expanded, norm=True)
        h, w = math.ceil(h / b.stride), math.ceil(w / b.stride)
        t.add(h * w, b.kernel * b.kernel * expanded, expanded, norm=True)
        if not lite:
            squeeze = max(1, int(b.filters_in * SE_RATIO))
            t.add(1, expanded * squeeze, squeeze, bias=True)
            t.add(1, squeeze * expanded, expanded, bias=True)
        t.add(h * w, expanded * b.filters_out, b.filters_out, norm=True)
    return blocks[-1].filters_out, h, w


def _detection_pass(t: CostTally, det: dict, channels: int, positions: int) -> int:
    """Count one pass of MobileDenseNet blocks on `channels` inputs; returns its output channels."""
    f, expanded = det["filters"], det["filters"] * det["expand"]
    for _ in range(det["blocks"]):
        for j in range(MBCONVS_PER_BLOCK):
            t.add(positions, (channels if j == 0 else f * j) * expanded, expanded, norm=True)
            t.add(positions, det["kernel"] ** 2 * expanded, expanded, norm=True)
            if det["se_ratio"]:
                squeeze = max(1, int(f * det["se_ratio"]))
                t.add(1, expanded * squeeze, squeeze, bias=True)
                t.add(1, squeeze * expanded, expanded, bias=True)
            t.add(positions, expanded * f, f, norm=True)
        channels = f * MBCONVS_PER_BLOCK
    return channels


def efficientpose_cost(variant: str, input_size: int | tuple, num_keypoints: int = 16,
                       num_limbs: int = 14, training_outputs: bool = False) -> tuple[int, int]:
    """(parameters, multiply-adds) of `build_efficientpose(variant, ...)` at `input_size`,
    the way kpose.models.flops counts them, from the variant's config alone."""
    cfg, h, w = variant_grid("efficientpose", VARIANTS, variant, input_size, DETECTION_STRIDE)
    t = CostTally()
    t.add(h * w, 3, 3, bias=True)  # input normalisation: a 1x1 depthwise convolution
    channels, gh, gw = _stream(t, cfg["high"], 3, h, w)
    if cfg["low"] is not None:
        low, _, _ = _stream(t, cfg["low"], 2, math.ceil(h / 2), math.ceil(w / 2))
        channels += low
    grid = gh * gw
    det = cfg["detection"]
    out = _detection_pass(t, det, channels, grid)            # pass 1: skeleton
    for _ in range(2):                                       # passes 2, 3: detection
        out = _detection_pass(t, det, out + channels, grid)
    k = num_keypoints
    t.add(grid, out * k, k, bias=True)                      # pass-3 confidence maps
    for i in range(cfg["upscale_layers"]):                   # transposed: per input pixel
        t.add(grid * 4 ** i, 4 * 4 * k * k, k, bias=True)
    if training_outputs:
        t.add(grid, out * 2 * num_limbs, 2 * num_limbs, bias=True)
        t.add(grid, out * k, k, bias=True)
    return t.params, t.macs
