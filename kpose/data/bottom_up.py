"""tf.data input pipeline for bottom-up training: whole images, every person, ignore masks.

Each sample is a whole image (from `ImageRecords`, see kpose.data.coco_images)
warped by one random affine into the network input: random zoom, rotation,
shift and horizontal flip, cropped or zero-padded to the input size. The same
matrix maps all people's keypoints and the image's ignore mask, so they stay
registered with the pixels. All per-sample work runs as TensorFlow ops inside
`Dataset.map` (decode, warp, jitter): no per-sample Python. Images and masks come
from their files, or, for data read from ``tfrecord:DIR``, from the streamed shards
(kpose.data.shard_stream). Conventions are those of kpose.transforms: pixel
centres at integers, matrices image -> input.

Augmentation (the `augment` dict; missing keys take DEFAULT_AUGMENT's values):

* ``scale``: [lo, hi], zoom factor drawn uniformly; 1 fits the whole image into
  the input (aspect kept, the rest padded), 2 shows half of it twice as large.
* ``rotation``: degrees; the angle is uniform in [-rotation, rotation].
* ``rotation_prob``: the chance that a sample is rotated at all.
* ``flip``: the chance of a horizontal flip (left/right keypoints are swapped
  with the skeleton's flip_index, so a left wrist stays a left wrist).
* ``shift``: the crop centre moves by up to this fraction of the crop's size,
  per axis, uniformly.
* ``color``: colour jitter strength (brightness, contrast, saturation, hue); 0 = off.

The same seed gives the same batches: each sample's random numbers come from
stateless ops keyed by (seed, position in the stream), the shuffle is seeded and
the parallel map keeps the order, so a run does not depend on thread timing.
"""
from __future__ import annotations

import logging

import numpy as np

from kpose._tf import tf
from kpose.data.pipeline import encoded_image
from kpose.data.records import ImageRecords
from kpose.data.shard_stream import shuffled_rows
from kpose.data.tf_images import color_jitter_tf, decode_encoded_tf
from kpose.transforms_tf import affine_matrix_tf, apply_affine_tf, warp_image_tf

log = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE
DEFAULT_AUGMENT = {"scale": (0.75, 1.5), "rotation": 30.0, "rotation_prob": 1.0, "flip": 0.5,
                   "shift": 0.1, "color": 0.0}


def check_augment(augment: dict | None) -> dict:
    """DEFAULT_AUGMENT updated with `augment`; a ValueError naming any unknown key or bad value."""
    augment = dict(augment or {})
    unknown = sorted(set(augment) - set(DEFAULT_AUGMENT))
    if unknown:
        raise ValueError(f"bottom-up augment has unknown key(s) {unknown}. Fix: use only {sorted(DEFAULT_AUGMENT)} "
                         f"(see kpose.data.bottom_up).")
    a = {**DEFAULT_AUGMENT, **augment}
    lo, hi = (float(v) for v in a["scale"])
    if not 0 < lo <= hi:
        raise ValueError(f"bottom-up augment scale={a['scale']!r}: need 0 < lo <= hi. Fix: e.g. [0.75, 1.5].")
    for key in ("rotation_prob", "flip"):
        if not 0.0 <= float(a[key]) <= 1.0:
            raise ValueError(f"bottom-up augment {key}={a[key]!r} is not a probability. Fix: use 0..1.")
    for key in ("rotation", "shift", "color"):
        if float(a[key]) < 0:
            raise ValueError(f"bottom-up augment {key}={a[key]!r} is negative. Fix: use a value >= 0.")
    return {"scale": (lo, hi), **{k: float(a[k]) for k in ("rotation", "rotation_prob", "flip", "shift", "color")}}


def people_tensors(records: ImageRecords, max_people: int) -> np.ndarray:
    """Keypoints [N, max_people, K, 3] for tf.data: padded, or the largest people of crowded images.

    An image with more than max_people people keeps the max_people largest (by
    area); the rest are dropped, and how many images that hit is logged.
    """
    if max_people < 1:
        raise ValueError(f"max_people={max_people}: need at least 1.")
    n, m = records.keypoints.shape[:2]
    k = records.skeleton.num_keypoints
    out = np.zeros((n, max_people, k, 3), np.float32)
    crowded = records.num_people > max_people
    if crowded.any():
        log.warning("%d of %d images have more than max_people=%d people (up to %d): only the %d largest of "
                    "each are trained on. Fix: raise max_people.", int(crowded.sum()), n, max_people,
                    int(records.num_people.max()), max_people)
    keep = min(m, max_people)
    out[:, :keep] = records.keypoints[:, :keep]
    if crowded.any():
        area = np.where(np.arange(m)[None] < records.num_people[:, None], records.areas, -np.inf)
        largest = np.argsort(-area[crowded], axis=1, kind="stable")[:, :max_people]
        out[crowded] = np.take_along_axis(records.keypoints[crowded], largest[..., None, None], axis=1)
    return out


def _ignore_mask(x: dict, m: tf.Tensor, input_size: tuple[int, int]) -> tf.Tensor:
    """The image's ignore mask warped like its pixels: [H, W] float32, 1 = ignore; zeros without a mask.
    The mask's PNG bytes come with a shard row, else from its file ('' = none)."""
    given = x["ignore_encoded"] if "ignore_encoded" in x else x["ignore"]

    def warped() -> tf.Tensor:
        raw = x["ignore_encoded"] if "ignore_encoded" in x else tf.io.read_file(x["ignore"])
        mask = tf.cast(tf.io.decode_png(raw, channels=1), tf.float32) / 255.0
        # Bilinear then threshold: the region's edge lands where the affine puts it, and stays binary.
        return tf.cast(warp_image_tf(mask, m, input_size)[..., 0] > 0.5, tf.float32)

    return tf.cond(tf.strings.length(given) > 0, warped, lambda: tf.zeros(input_size, tf.float32))


def bottom_up_dataset(records: ImageRecords, input_size: tuple[int, int], augment: dict | None,
                      batch_size: int, seed: int = 0, max_people: int = 30, shuffle_buffer: int = 2048,
                      with_meta: bool = False, start: int = 0) -> tf.data.Dataset:
    """Infinite, shuffled, augmented batches of (images, keypoints, ignore masks).

    images [B, H, W, 3] float32 in 0..255; keypoints [B, max_people, K, 3]
    (x, y, v) in input pixels, v=0 (and x=y=0) for padding, unlabelled
    keypoints and keypoints warped outside the input; ignore masks [B, H, W]
    float32, 1 = ignore. input_size is (H, W); augment: see the module
    docstring. with_meta adds a 4th element {"index": [B] record row,
    "matrix": [B, 2, 3] image -> input, "flip": [B] bool}, to check or draw
    what was done. start: samples of the stream to skip (a resumed run goes on where the
    interrupted one was; skipped before any image is decoded).
    """
    if len(records) == 0:
        raise ValueError(f"bottom_up_dataset: no images in {records.source or 'the records'}. "
                         f"Fix: check the data spec ({records.summary()}).")
    a = check_augment(augment)
    in_h, in_w = int(input_size[0]), int(input_size[1])
    size = (in_h, in_w)
    cols = {
        "path": records.image_paths.astype(str),
        "ignore": records.ignore_paths.astype(str),
        "size": records.image_sizes.astype(np.float32),
        "keypoints": people_tensors(records, max_people),
        "index": np.arange(len(records), dtype=np.int64),
    }
    flip_index = tf.constant(records.skeleton.flip_index(), tf.int32)
    aspect = in_w / in_h
    (s_lo, s_hi), color = a["scale"], a["color"]

    # No autograph: no branch on a tensor here (tf.cond where one is needed); converting costs seconds.
    @tf.autograph.experimental.do_not_convert
    def sample(position, x):
        seeds = tf.random.experimental.stateless_split(tf.stack([tf.cast(seed, tf.int64), position]), 5)
        r = tf.random.stateless_uniform([6], seed=seeds[0])
        h, w = x["size"][0], x["size"][1]
        # The whole image, grown along one axis to the input's aspect ratio.
        fit = tf.stack([tf.maximum(w, h * aspect), tf.maximum(h, w / aspect)])
        scale = fit / (s_lo + (s_hi - s_lo) * r[0])
        rot = tf.where(r[1] < a["rotation_prob"], (2 * r[2] - 1) * a["rotation"], 0.0)
        shift = (2 * r[3:5] - 1) * a["shift"] * scale
        flip = r[5] < a["flip"]
        center = tf.stack([(w - 1) / 2, (h - 1) / 2]) + shift
        m = affine_matrix_tf(center, scale, size, rot, flip)
        img = warp_image_tf(decode_encoded_tf(encoded_image(x)), m, size)
        if color > 0:
            img = color_jitter_tf(img, color, seeds[1:])
        mask = _ignore_mask(x, m, size)
        kps = apply_affine_tf(x["keypoints"], m)
        # A horizontal flip turns the left wrist into the right one: swap channels.
        kps = tf.where(flip, tf.gather(kps, flip_index, axis=1), kps)
        inside = ((kps[..., 0] >= -0.5) & (kps[..., 0] <= in_w - 0.5)
                  & (kps[..., 1] >= -0.5) & (kps[..., 1] <= in_h - 0.5))
        v = tf.where(inside, kps[..., 2], 0.0)
        kps = tf.concat([tf.where((v > 0)[..., None], kps[..., :2], 0.0), v[..., None]], -1)
        img = tf.ensure_shape(img, [in_h, in_w, 3])
        mask = tf.ensure_shape(mask, [in_h, in_w])
        if with_meta:
            return img, kps, mask, {"index": x["index"], "matrix": m, "flip": flip}
        return img, kps, mask

    ds = shuffled_rows(cols, records.image_paths, records.image_ids, seed, shuffle_buffer,
                       path_columns=("path", "ignore"))
    ds = ds.enumerate().skip(int(start)).map(sample, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)
