"""Parameters and multiply-adds of a SimplePose variant from its config, without building it
(a Keras build of the paper's 96 M-weight network takes seconds; `kpose models` lists it).

The counts follow `kpose.models.flops`, layer for layer as `kpose.models.simplepose` builds
them: parameters are every weight (batch-norm statistics and the frozen input normalisation
included), multiply-adds those of every convolution at batch 1. The deployed network
(training_outputs False) holds only what its stride-4 outputs depend on: each stack's
hourglass, stride-4 head and (before the last stack) stride-4 merge. tests/test_simplepose.py
checks both counts against the built networks.
"""
from __future__ import annotations

from kpose.models.flops import CostTally, variant_grid
from kpose.models.simplepose import INPUT_STRIDE, SE_MIN_CHANNELS, SE_REDUCTION, VARIANTS, scales


def _residual(t: CostTally, positions: int, cin: int, cout: int) -> None:
    """The hourglass residual block: 1x1 -> 3x3 -> 1x1 bottleneck, a 1x1 skip where widths differ."""
    t.conv(positions, cin, cout // 2, 1, norm=True)
    t.conv(positions, cout // 2, cout // 2, 3, norm=True)
    t.conv(positions, cout // 2, cout, 1, norm=True)
    if cin != cout:
        t.conv(positions, cin, cout, 1, norm=True)


def simplepose_cost(variant: str, num_keypoints: int, num_limbs: int, input_size,
                    training_outputs: bool = False) -> tuple[int, int]:
    """(parameters, multiply-adds) of `build_simplepose(variant, ...)` at input_size (h, w)."""
    cfg, h, w = variant_grid("simplepose", VARIANTS, variant, input_size, INPUT_STRIDE)
    c, inc, depth, stacks = cfg["channels"], cfg["increase"], cfg["depth"], cfg["stacks"]
    widths = [c + inc * i for i in range(depth + 1)]
    pixels = [(h // s) * (w // s) for s in scales(variant)]   # per supervised scale
    t = CostTally()
    t.conv(h * w, 1, 3, 1, bias=True)                         # input_normalization (depthwise 1x1)
    t.conv((h // 2) * (w // 2), 3, c // 4, 7, norm=True)
    _residual(t, (h // 2) * (w // 2), c // 4, c // 2)
    _residual(t, pixels[0], c // 2, c // 2)
    for _ in cfg["dilations"]:
        t.conv(pixels[0], c // 2, c // 2, 3, norm=True)

    def hourglass(level: int) -> None:
        _residual(t, pixels[level], widths[level], widths[level])               # skip
        _residual(t, pixels[level + 1], widths[level], widths[level + 1])       # down
        if level == depth - 1:
            _residual(t, pixels[level + 1], widths[level + 1], widths[level + 1])
        else:
            hourglass(level + 1)
        _residual(t, pixels[level + 1], widths[level + 1], widths[level])       # up
        t.conv(pixels[level], widths[level], widths[level], 3, norm=True)     # refine

    squeeze = max(c // SE_REDUCTION, SE_MIN_CHANNELS)
    for s in range(1, stacks + 1):
        hourglass(0)
        for j in range(depth + 1) if training_outputs else (0,):
            t.conv(pixels[j], widths[j], c, 3, norm=True)
            t.conv(pixels[j], c, c, 3, norm=True)
            t.conv(1, c, squeeze, 1, bias=True)
            t.conv(1, squeeze, c, 1, bias=True)
            t.conv(pixels[j], c, int(num_keypoints), 1, bias=True)
            t.conv(pixels[j], c, int(num_limbs), 1, bias=True)
            if s < stacks:
                t.conv(pixels[j], int(num_keypoints) + int(num_limbs), widths[j], 1, bias=True)
                t.conv(pixels[j], c, widths[j], 1, bias=True)
    return t.params, t.macs
