"""Image ops both tf.data pipelines use (top-down crops, bottom-up whole images)."""
from __future__ import annotations

from kpose._tf import tf


def decode_image_tf(path: tf.Tensor) -> tf.Tensor:
    """A JPEG or PNG file -> float32 [H, W, 3] in 0..255, decoded as kpose.data.images.load_image does.

    Images were validated (and normalised when needed) by kpose.data.images before the
    pipeline, so only clean JPEG/PNG arrive here.
    """
    return decode_encoded_tf(tf.io.read_file(path))


def decode_encoded_tf(raw: tf.Tensor) -> tf.Tensor:
    """`decode_image_tf` of the file's bytes (as TFRecord shards hold them)."""
    # INTEGER_ACCURATE is libjpeg's ISLOW IDCT, the one Pillow uses: the same pixels as the reference path.
    img = tf.cond(tf.io.is_jpeg(raw),
                  lambda: tf.io.decode_jpeg(raw, channels=3, dct_method="INTEGER_ACCURATE"),
                  lambda: tf.io.decode_png(raw, channels=3))
    return tf.cast(img, tf.float32)


def color_jitter_tf(img: tf.Tensor, strength: float, seeds: tf.Tensor) -> tf.Tensor:
    """Random brightness, contrast, saturation and hue of a 0..255 image; seeds [4, 2] (stateless ops)."""
    x = img / 255.0
    x = tf.image.stateless_random_brightness(x, 0.4 * strength, seed=seeds[0])
    x = tf.image.stateless_random_contrast(x, 1 - strength, 1 + strength, seed=seeds[1])
    x = tf.image.stateless_random_saturation(x, 1 - 2 * strength, 1 + 2 * strength, seed=seeds[2])
    x = tf.image.stateless_random_hue(x, 0.2 * strength, seed=seeds[3])
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0
