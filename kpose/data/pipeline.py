"""tf.data input pipeline for top-down training and evaluation: person crops.

All per-sample work runs as TensorFlow ops inside `Dataset.map` (parallel decode,
affine crop, augmentation): no per-sample Python. Images come from their files, or, for
data read from ``tfrecord:DIR``, from the streamed shards (kpose.data.shard_stream).
Training targets are encoded downstream (kpose.training.targets), from the crops'
keypoints. Box-to-crop geometry is precomputed for all instances in NumPy with
kpose.transforms, the same functions the reference path uses.

Crops are float32 RGB in 0..255; models normalise inside their graph.
"""
from __future__ import annotations

import numpy as np

from kpose._tf import tf
from kpose.data.records import Instances
from kpose.data.shard_stream import in_shards, shard_rows, shuffled_rows
from kpose.data.tf_images import color_jitter_tf, decode_encoded_tf
from kpose.transforms import DEFAULT_CROP_PADDING, box_to_center_scale
from kpose.transforms_tf import affine_matrix_tf, apply_affine_tf, warp_image_tf

AUTOTUNE = tf.data.AUTOTUNE


def encoded_image(x: dict) -> tf.Tensor:
    """A row's encoded image: streamed with it from the shards, else read from its file."""
    return x["encoded"] if "encoded" in x else tf.io.read_file(x["path"])


def instance_tensors(instances: Instances, input_size: tuple[int, int],
                     padding: float) -> dict[str, np.ndarray]:
    """Columns fed to tf.data: path, crop centre/scale, keypoints, index."""
    h, w = input_size
    center, scale = box_to_center_scale(instances.bboxes.astype(np.float64), w / h, padding)
    return {
        "path": instances.image_paths.astype(str),
        "center": center.astype(np.float32),
        "scale": scale.astype(np.float32),
        "keypoints": instances.keypoints.astype(np.float32),
        "index": np.arange(len(instances), dtype=np.int64),
    }


def augmented_crops(instances: Instances, input_size: tuple[int, int], augment: dict, seed: int = 0,
                    shuffle_buffer: int = 2048, start: int = 0) -> tf.data.Dataset:
    """Infinite, shuffled, augmented (crop [H, W, 3], keypoints [K, 3] in crop pixels) samples.

    augment: flip, rotation, rotation_prob, scale, shift, color, box_padding (recipe keys).
    Keypoints outside the crop get v = 0; a flip swaps left and right channels.

    The same seed gives the same batches: each sample's augmentation draws from
    stateless random ops keyed by (seed, position in the stream), and the parallel
    map keeps the order, so a run does not depend on thread timing. start: samples of the
    stream to skip (a resumed run goes on where the interrupted one was; before decoding).
    """
    cols = instance_tensors(instances, input_size, augment["box_padding"])
    flip_index = tf.constant(instances.skeleton.flip_index(), tf.int32)
    out_h, out_w = input_size
    a = augment

    # No autograph (nor below): no branch on a tensor here; converting costs seconds per run.
    @tf.autograph.experimental.do_not_convert
    def sample(index, x):
        seeds = tf.random.experimental.stateless_split(tf.stack([tf.cast(seed, tf.int64), index]), 5)
        r = tf.random.stateless_uniform([6], seed=seeds[0])
        scale_f = a["scale"][0] + (a["scale"][1] - a["scale"][0]) * r[0]
        rot = tf.where(r[1] < a["rotation_prob"], (2 * r[2] - 1) * a["rotation"], 0.0)
        shift = (2 * r[3:5] - 1) * a["shift"] * x["scale"]
        flip = r[5] < a["flip"]
        m = affine_matrix_tf(x["center"] + shift, x["scale"] * scale_f, input_size, rot, flip)
        img = warp_image_tf(decode_encoded_tf(encoded_image(x)), m, input_size)
        if a["color"] > 0:
            img = color_jitter_tf(img, a["color"], seeds[1:])
        kps = apply_affine_tf(x["keypoints"], m)
        # A horizontal flip turns the left wrist into the right one: swap channels.
        kps = tf.where(flip, tf.gather(kps, flip_index), kps)
        inside = ((kps[:, 0] >= -0.5) & (kps[:, 0] <= out_w - 0.5)
                  & (kps[:, 1] >= -0.5) & (kps[:, 1] <= out_h - 0.5))
        kps = tf.concat([kps[:, :2], tf.where(inside, kps[:, 2], 0.0)[:, None]], -1)
        return img, kps

    ds = shuffled_rows(cols, instances.image_paths, instances.image_ids, seed, shuffle_buffer)
    return ds.enumerate().skip(int(start)).map(sample, num_parallel_calls=AUTOTUNE, deterministic=True)


def eval_dataset(instances: Instances, input_size: tuple[int, int], batch_size: int,
                 padding: float = DEFAULT_CROP_PADDING) -> tf.data.Dataset:
    """Batches of (crops, image->crop affine matrices, instance index): every instance once, in
    table order (in shard order for data read from shards)."""
    cols = instance_tensors(instances, input_size, padding)

    @tf.autograph.experimental.do_not_convert
    def sample(x):
        m = affine_matrix_tf(x["center"], x["scale"], input_size, 0.0, False)
        return warp_image_tf(decode_encoded_tf(encoded_image(x)), m, input_size), m, x["index"]

    if in_shards(instances.image_paths):
        # Shard order, not the table's: rows come back with their index.
        cols.pop("path")
        ds = shard_rows(cols, instances.image_paths, instances.image_ids)
    else:
        ds = tf.data.Dataset.from_tensor_slices(cols)
    return ds.map(sample, num_parallel_calls=AUTOTUNE).batch(batch_size).prefetch(AUTOTUNE)
