"""The exported graph: a PoseModel's inference network behind one named signature.

Every format is converted from the same SavedModel, whose ``serving_default``
signature takes ``image`` (float32 [1, H, W, 3], RGB 0..255; normalisation is in
the graph) and returns ``heatmaps`` (float32 [1, h, w, K], channels in the
skeleton's order). Decoding stays outside the graph, so the exported model has
only delegate-friendly ops (no ARG_MAX / GATHER_ND / CAST).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kpose._tf import keras, tf

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "image"
OUTPUT_NAME = "heatmaps"


def export_network(model) -> keras.Model:
    """The PoseModel's inference network with its output channels in skeleton order.

    Networks with a recorded ``output_channel_order`` (the official EfficientPose
    releases) get the permutation folded into the weights of their last layer,
    so no GATHER op enters the exported graph.
    """
    net = model.keras_model
    perm = model.config.get("output_channel_order")
    if perm is None:
        return net
    perm = np.asarray(perm)
    clone = keras.models.clone_model(net)
    clone.set_weights(net.get_weights())
    last = clone.get_layer(clone.output_names[0]) if hasattr(clone, "output_names") else clone.layers[-1]
    if not isinstance(last, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)) or not last.use_bias:
        raise ValueError(f"cannot fold output_channel_order into last layer {last.name!r} "
                         f"({type(last).__name__}); expected a convolution with bias")
    kernel, bias = last.get_weights()
    # Conv2D kernels are (kh, kw, in, out); Conv2DTranspose kernels are (kh, kw, out, in).
    if isinstance(last, keras.layers.Conv2DTranspose):
        kernel = kernel[:, :, perm, :]
    else:
        kernel = kernel[..., perm]
    last.set_weights([kernel, bias[perm]])
    return clone


def detection_stride(model) -> int:
    """Input pixels per cell of the grid the network detects keypoints on."""
    if model.config["family"] == "efficientpose":
        from kpose.models.efficientpose import DETECTION_STRIDE
        return DETECTION_STRIDE
    return int(round(max(model.codec.stride)))


HEATMAP_CHOICES = ("full", "detection")


def with_heatmaps(model, heatmaps: str = "full"):
    """The PoseModel to export for a choice of output heatmaps.

    "full": the network's own output (EfficientPose: upscaled to stride 1).
    "detection": the last detection pass's maps at the detection stride (8 for
    EfficientPose), skipping the upscaling layers: a 64x smaller output tensor to read
    back and decode, and less compute; DARK still decodes them to sub-pixel positions.
    """
    if heatmaps not in HEATMAP_CHOICES:
        raise ValueError(f"heatmaps {heatmaps!r}; known: {', '.join(HEATMAP_CHOICES)}")
    if heatmaps == "full":
        return model
    from kpose.codecs.heatmap import HeatmapCodec
    from kpose.pose_model import PoseModel

    if model.config["family"] != "efficientpose":
        raise ValueError(f"heatmaps='detection' is defined for EfficientPose, not {model.config['family']!r}")
    if model.config.get("output_channel_order") is not None:
        raise ValueError("heatmaps='detection' needs a model whose heads are in skeleton order")
    net = model.keras_model
    layer = next((l for l in net.layers if l.name.endswith("pass3_detection2_confs")), None)
    if layer is None:
        raise ValueError(f"{net.name}: no pass3_detection2_confs layer to export")
    sub = keras.Model(net.inputs, layer.output, name=net.name + "_detection")
    stride = detection_stride(model)
    codec = model.codec
    coarse = HeatmapCodec(codec.input_size, tuple(s // stride for s in codec.input_size),
                          sigma=max(codec.sigma * codec.stride[0] / stride, 1.0))
    config = dict(model.config, codec=coarse.to_dict(), heatmaps="detection")
    return PoseModel(sub, config)


def serving_function(net: keras.Model, input_size: tuple[int, int]):
    """tf.function image -> {"heatmaps": ...} with a fixed [1, H, W, 3] input."""
    h, w = input_size

    @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32, name=INPUT_NAME)])
    def serve(image):
        out = net(image, training=False)
        if isinstance(out, (list, tuple)):
            out = out[-1]
        return {OUTPUT_NAME: tf.identity(out, name=OUTPUT_NAME)}

    return serve


def write_saved_model(model, directory: str | Path) -> Path:
    """Write the export SavedModel (signature ``serving_default``) for a PoseModel."""
    d = Path(directory)
    net = export_network(model)
    module = tf.Module()
    # Track the variables, not the Keras model: saving a model also traces every
    # layer's call on its own, which fails for tfmot's quantised transposed convolutions.
    module.weights = list(net.variables)
    module.serve = serving_function(net, model.input_size)
    tf.saved_model.save(module, str(d), signatures={SIGNATURE_KEY: module.serve})
    return d
