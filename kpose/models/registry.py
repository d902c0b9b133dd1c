"""The model registry: one builder per family, each declaring its task and outputs.

A family's builder makes a tf_keras functional network from plain numbers; its
declared outputs (name, kind, stride, channels) are what training encodes targets
for, what export names, and what decoding reads. Nothing outside this module and
the builders themselves looks at a family's name to decide anything: the task
(`top_down` or `bottom_up`) does that.

Builder signature::

    build(variant: str, num_keypoints: int, num_limbs: int, input_size: (h, w) | None,
          training_outputs: bool) -> keras.Model

With training_outputs the network returns every supervised output in the order
`outputs(variant, K, L)` lists them (intermediate supervision); without, only the
outputs marked `inference`, in that order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

TOP_DOWN, BOTTOM_UP = "top_down", "bottom_up"
TASKS = (TOP_DOWN, BOTTOM_UP)
# heatmaps: one channel per keypoint; pafs: (x, y) per limb; limb_heatmaps: one per limb.
OUTPUT_KINDS = ("heatmaps", "pafs", "limb_heatmaps")


@dataclass(frozen=True)
class OutputSpec:
    """One output of a network.

    name: the output layer's name. kind: one of OUTPUT_KINDS. stride: input pixels
    per output pixel. channels: number of channels. inference: part of the
    deployed model's outputs (the last stage), not only supervised in training.
    """

    name: str
    kind: str
    stride: int
    channels: int
    inference: bool = False

    def __post_init__(self) -> None:
        if self.kind not in OUTPUT_KINDS:
            raise ValueError(f"output {self.name!r}: kind {self.kind!r}; known: {', '.join(OUTPUT_KINDS)}")


@dataclass(frozen=True)
class Family:
    """A model family: its task, builder, declared outputs and input constraint."""

    name: str
    task: str
    variants: tuple[str, ...]
    build: Callable
    outputs: Callable[[str, int, int], tuple[OutputSpec, ...]]
    input_stride: int
    # The output that holds the inference heatmaps at the detection grid, before any
    # fixed upscaling (exported with heatmaps="detection"); None when there is none.
    detection_output: str | None = None
    # variant -> path of released weights for `init: official` (FileNotFoundError with the fix).
    pretrained: Callable[[str], object] | None = None
    # variant -> the variants whose trained weights it takes (other normalisation or form).
    weights_from: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # (source variant, variant, {layer name: weights}) -> the same for `variant`, same function.
    adapt_weights: Callable[[str, str, dict], dict] | None = None
    # (variant, model.backbone_weights: "imagenet" or a file) -> loader (network -> summary) of
    # pretrained backbone weights; raises at once where they cannot be had. None: no backbone.
    backbone_weights: Callable[[str, str], Callable] | None = None
    # (h, w) the family's paper or release reports its size at (`kpose models`).
    reference_input_size: tuple[int, int] = (368, 368)
    # variant -> (h, w) where a variant is reported at another size than reference_input_size.
    variant_input_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    # (variant, num_keypoints, num_limbs, (h, w), training_outputs) -> (parameters, multiply-adds)
    # without building the network, equal to kpose.models.flops' counts of the built one
    # (tests check it for every recipe); None: `kpose models` builds the network to count.
    cost: Callable[[str, int, int, tuple[int, int], bool], tuple[int, int]] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"family {self.name!r}: task {self.task!r}; known: {', '.join(TASKS)}")


def input_hw(input_size, stride: int) -> tuple[int | None, int | None]:
    """(h, w) from an int, an (h, w) pair or None (any size); each side a multiple of `stride`."""
    if input_size is None:
        return (None, None)
    h, w = (input_size, input_size) if isinstance(input_size, (int, float)) else tuple(input_size)
    for side in (h, w):
        if side is not None and int(side) % stride:
            raise ValueError(f"input_size {input_size!r}: height and width must each be a multiple of {stride} "
                             f"(the network's stride); pad or resize to one")
    return (None if h is None else int(h), None if w is None else int(w))

