"""Training targets: what each declared network output is supervised with, encoded on tf.data.

The network's family declares its outputs (kpose.models.registry.OutputSpec); each
becomes a TargetSpec at the size of the batches being trained (which may differ from
the network's own input size under progressive resizing), encoded per sample with the
TF ports of the codecs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kpose._tf import tf
from kpose.codecs.heatmap_tf import encode_heatmaps_tf
from kpose.codecs.paf_tf import encode_pafs_tf
from kpose.data.pipeline import augmented_crops
from kpose.data.records import Instances
from kpose.models import OutputSpec

AUTOTUNE = tf.data.AUTOTUNE


@dataclass(frozen=True)
class TargetSpec:
    """One supervised output: what to encode and at which size.

    kind: "heatmaps" or "pafs"; size: (h, w) of the output; sigma: Gaussian sigma
    (heatmaps) or half-width (pafs) in that output's pixels.
    """

    name: str
    kind: str
    size: tuple[int, int]
    sigma: float


def target_specs(outputs: tuple[OutputSpec, ...], input_size, sigma: float,
                 paf_width: float) -> list[TargetSpec]:
    """One TargetSpec per declared output, for batches of `input_size` (h, w).

    sigma is in input pixels; each output gets it in its own pixels, at least 1 so
    that coarse passes still see a Gaussian rather than a single pixel.
    """
    specs = []
    for out in outputs:
        if input_size[0] % out.stride or input_size[1] % out.stride:
            raise ValueError(f"input size {tuple(input_size)} is not a multiple of output {out.name}'s "
                             f"stride {out.stride}; use a multiple of {out.stride}")
        size = (int(input_size[0]) // out.stride, int(input_size[1]) // out.stride)
        if out.kind == "heatmaps":
            specs.append(TargetSpec(out.name, "heatmaps", size, max(sigma / out.stride, 1.0)))
        elif out.kind == "pafs":
            specs.append(TargetSpec(out.name, "pafs", size, float(paf_width)))
        else:
            raise ValueError(f"output {out.name!r}: no training target for kind {out.kind!r} yet")
    return specs


def encode_targets(kps: tf.Tensor, input_size, specs: list[TargetSpec], limbs) -> tuple[dict, dict]:
    """One sample's targets and weights, per spec name, from its keypoints [K, 3] (input pixels)."""
    targets, weights = {}, {}
    for spec in specs:
        if spec.kind == "heatmaps":
            t, wt = encode_heatmaps_tf(kps, input_size, spec.size, spec.sigma)
        else:
            t, wt = encode_pafs_tf(kps[None], input_size, spec.size, limbs, spec.sigma)
        targets[spec.name], weights[spec.name] = t, wt
    return targets, weights


def training_batches(instances: Instances, input_size: tuple[int, int], specs: list[TargetSpec],
                     augment: dict, batch_size: int, seed: int = 0,
                     shuffle_buffer: int = 2048) -> tf.data.Dataset:
    """Infinite batches of (crops, targets, target_weights) for top-down training.

    Deterministic for a seed: the crops come from kpose.data.pipeline.augmented_crops
    (stateless augmentation, ordered maps) and encoding is a pure function of them.
    """
    limbs = np.asarray(instances.skeleton.limbs, np.int32)

    def encode(img, kps):
        targets, weights = encode_targets(kps, input_size, specs, limbs)
        return img, targets, weights

    ds = augmented_crops(instances, input_size, augment, seed, shuffle_buffer)
    ds = ds.map(encode, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)
