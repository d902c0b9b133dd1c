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
from kpose.codecs.heatmap_tf import encode_heatmaps_tf, encode_multi_heatmaps_tf
from kpose.codecs.limb_heatmap_tf import encode_limb_heatmaps_tf
from kpose.codecs.paf_tf import encode_pafs_tf
from kpose.data.bottom_up import bottom_up_dataset
from kpose.data.pipeline import augmented_crops
from kpose.data.records import ImageRecords, Instances
from kpose.models import OutputSpec

AUTOTUNE = tf.data.AUTOTUNE


@dataclass(frozen=True)
class TargetSpec:
    """One supervised output: what to encode and at which size.

    kind: "heatmaps", "pafs" or "limb_heatmaps"; size: (h, w) of the output; sigma: Gaussian
    sigma (heatmaps), half-width (pafs) or the limb Gaussian's sigma across the segment
    (limb_heatmaps) in that output's pixels; stride: input pixels per output pixel;
    background: the heatmaps end with OpenPose's background channel (1 - the max of the others).
    """

    name: str
    kind: str
    size: tuple[int, int]
    sigma: float
    stride: int = 1
    background: bool = False


def target_specs(outputs: tuple[OutputSpec, ...], input_size, sigma: float,
                 paf_width: float, num_keypoints: int | None = None,
                 limb_sigma: float | None = None) -> list[TargetSpec]:
    """One TargetSpec per declared output, for batches of `input_size` (h, w).

    sigma and limb_sigma (needed when an output is limb_heatmaps) are in input pixels;
    each output gets them in its own pixels, at least 1 so that coarse passes still see a
    Gaussian rather than a single pixel. Heatmap outputs with num_keypoints + 1 channels
    carry a background channel.
    """
    specs = []
    for out in outputs:
        if input_size[0] % out.stride or input_size[1] % out.stride:
            raise ValueError(f"input size {tuple(input_size)} is not a multiple of output {out.name}'s "
                             f"stride {out.stride}; use a multiple of {out.stride}")
        size = (int(input_size[0]) // out.stride, int(input_size[1]) // out.stride)
        if out.kind == "heatmaps":
            background = num_keypoints is not None and out.channels == num_keypoints + 1
            specs.append(TargetSpec(out.name, "heatmaps", size, max(sigma / out.stride, 1.0), out.stride,
                                    background))
        elif out.kind == "pafs":
            specs.append(TargetSpec(out.name, "pafs", size, float(paf_width), out.stride))
        elif out.kind == "limb_heatmaps":
            if limb_sigma is None:
                raise ValueError(f"output {out.name!r} is a limb heatmap: its targets need limb_sigma "
                                 f"(recipe codec.limb_sigma, input pixels)")
            specs.append(TargetSpec(out.name, "limb_heatmaps", size, max(float(limb_sigma) / out.stride, 1.0),
                                    out.stride))
        else:
            raise ValueError(f"output {out.name!r}: no training target for kind {out.kind!r} yet")
    return specs


def _limb_encoder(spec: TargetSpec):
    """The TF encoder of a limb output kind: (people [P, K, 3], input size, size, limbs, sigma)
    -> (maps, per-limb weights)."""
    if spec.kind == "pafs":
        return encode_pafs_tf
    if spec.kind == "limb_heatmaps":
        return encode_limb_heatmaps_tf
    raise ValueError(f"target {spec.name!r}: no encoder for kind {spec.kind!r}")


def encode_targets(kps: tf.Tensor, input_size, specs: list[TargetSpec], limbs) -> tuple[dict, dict]:
    """One sample's targets and weights, per spec name, from its keypoints [K, 3] (input pixels)."""
    targets, weights = {}, {}
    for spec in specs:
        if spec.kind == "heatmaps":
            t, wt = encode_heatmaps_tf(kps, input_size, spec.size, spec.sigma)
        else:
            t, wt = _limb_encoder(spec)(kps[None], input_size, spec.size, limbs, spec.sigma)
        targets[spec.name], weights[spec.name] = t, wt
    return targets, weights


def training_batches(instances: Instances, input_size: tuple[int, int], specs: list[TargetSpec],
                     augment: dict, batch_size: int, seed: int = 0,
                     shuffle_buffer: int = 2048, start_batch: int = 0) -> tf.data.Dataset:
    """Infinite batches of (crops, targets, target_weights) for top-down training.

    Deterministic for a seed: the crops come from kpose.data.pipeline.augmented_crops
    (stateless augmentation, ordered maps) and encoding is a pure function of them.
    start_batch: batches of the stream to skip (resuming).
    """
    limbs = np.asarray(instances.skeleton.limbs, np.int32)

    # No autograph (nor below): no branch on a tensor here; converting costs seconds per run.
    @tf.autograph.experimental.do_not_convert
    def encode(img, kps):
        targets, weights = encode_targets(kps, input_size, specs, limbs)
        return img, targets, weights

    ds = augmented_crops(instances, input_size, augment, seed, shuffle_buffer, start=start_batch * batch_size)
    ds = ds.map(encode, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def encode_people_targets(kps: tf.Tensor, ignore: tf.Tensor, input_size, specs: list[TargetSpec],
                          limbs) -> tuple[dict, dict]:
    """One image's bottom-up targets from all its people [P, K, 3] (input pixels) and its
    ignore mask [H, W]: part heatmaps (max over people, plus background where declared),
    PAFs (averaged where people overlap) or limb heatmaps (max over people), and per-pixel
    weights [h, w, 1] that are 0 inside ignore regions (crowds, unlabelled people).

    Stages of one network share their targets: each distinct (kind, size, sigma) is
    encoded once.
    """
    targets, weights, cache = {}, {}, {}
    for spec in specs:
        key = (spec.kind, spec.size, spec.sigma, spec.stride)
        if key not in cache:
            if spec.kind == "heatmaps":
                t, _ = encode_multi_heatmaps_tf(kps, input_size, spec.size, spec.sigma)
            else:
                t, _ = _limb_encoder(spec)(kps, input_size, spec.size, limbs, spec.sigma)
            cover = tf.nn.avg_pool2d(ignore[None, :, :, None], spec.stride, spec.stride, "VALID")[0]
            cache[key] = (t, 1.0 - cover[: spec.size[0], : spec.size[1]])
        t, w = cache[key]
        if spec.background:
            t = tf.concat([t, tf.maximum(1.0 - tf.reduce_max(t, -1, keepdims=True), 0.0)], -1)
        targets[spec.name], weights[spec.name] = t, w
    return targets, weights


def bottom_up_batches(records: ImageRecords, input_size: tuple[int, int], specs: list[TargetSpec],
                      augment: dict, batch_size: int, seed: int = 0, shuffle_buffer: int = 2048,
                      max_people: int = 30, start_batch: int = 0) -> tf.data.Dataset:
    """Infinite batches of (images, targets, pixel weights) for bottom-up training, from the
    deterministic whole-image augmentation of kpose.data.bottom_up; start_batch: batches of the
    stream to skip (resuming)."""
    limbs = np.asarray(records.skeleton.limbs, np.int32)

    @tf.autograph.experimental.do_not_convert
    def encode(images, kps, ignore):
        def one(args):
            return encode_people_targets(args[0], args[1], input_size, specs, limbs)

        signature = ({s.name: tf.TensorSpec(None, tf.float32) for s in specs},) * 2
        targets, weights = tf.map_fn(one, (kps, ignore), fn_output_signature=signature)
        return images, targets, weights

    ds = bottom_up_dataset(records, input_size, augment, batch_size, seed=seed, max_people=max_people,
                           shuffle_buffer=shuffle_buffer, start=start_batch * batch_size)
    return ds.map(encode, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)

