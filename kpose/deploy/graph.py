"""The exported graph: a PoseModel's inference network behind one named signature.

Every format is converted from the same SavedModel, whose ``serving_default``
signature takes ``image`` (float32 [1, H, W, 3], RGB 0..255; normalisation is in
the graph) and returns ``heatmaps`` (float32 [1, h, w, K], channels in the
skeleton's order) and, for bottom-up models, ``pafs`` (float32 [1, h, w, 2L], limb
(x, y) pairs in the skeleton's limb order). Decoding stays outside the graph, so the exported model has
only delegate-friendly ops (no ARG_MAX / GATHER_ND / CAST).
"""
from __future__ import annotations

from pathlib import Path

from kpose._tf import keras, tf
from kpose.codecs import HeatmapCodec
from kpose.models import BOTTOM_UP, TOP_DOWN, get_family, network_outputs
from kpose.pose_model import PoseModel

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "image"
OUTPUT_NAME = "heatmaps"
PAF_OUTPUT_NAME = "pafs"


def export_network(model) -> keras.Model:
    """The PoseModel's inference network (outputs in the order its family declares)."""
    return model.keras_model


def detection_stride(model) -> int:
    """Input pixels per cell of the grid the network detects keypoints on: the finest
    stride among its outputs other than fixed upscaling (EfficientPose: 8)."""
    outputs = network_outputs(model.config)
    family = get_family(model.config["family"])
    if family.detection_output is not None:
        return next(o.stride for o in outputs if o.name == family.detection_output)
    return min(o.stride for o in outputs if o.inference)


HEATMAP_CHOICES = ("full", "detection")


def with_heatmaps(model, heatmaps: str = "full"):
    """The PoseModel to export for a choice of output heatmaps.

    "full": the network's own output (EfficientPose: upscaled to stride 1).
    "detection": the family's detection-grid maps (`Family.detection_output`, EfficientPose's
    last pass at stride 8), skipping fixed upscaling layers: a 64x smaller output tensor to
    read back and decode, and less compute; DARK still decodes them to sub-pixel positions.
    """
    if heatmaps not in HEATMAP_CHOICES:
        raise ValueError(f"heatmaps {heatmaps!r}; known: {', '.join(HEATMAP_CHOICES)}")
    if heatmaps == "full":
        return model
    family = get_family(model.config["family"])
    if family.detection_output is None or model.task != TOP_DOWN:
        raise ValueError(f"heatmaps='detection': {family.name} has no separate detection-grid output; "
                         f"export it with heatmaps='full'")
    net = model.keras_model
    layer = next((l for l in net.layers if l.name.endswith(family.detection_output)), None)
    if layer is None:
        raise ValueError(f"{net.name}: no {family.detection_output} layer to export")
    sub = keras.Model(net.inputs, layer.output, name=net.name + "_detection")
    stride = detection_stride(model)
    codec = model.codec
    coarse = HeatmapCodec(codec.input_size, tuple(s // stride for s in codec.input_size),
                          sigma=max(codec.sigma * codec.stride[0] / stride, 1.0))
    config = dict(model.config, codec=coarse.to_dict(), heatmaps="detection")
    return PoseModel(sub, config)


def output_names(model) -> tuple[str, ...]:
    """Names of the exported outputs: heatmaps (top-down), heatmaps and pafs (bottom-up)."""
    return (OUTPUT_NAME, PAF_OUTPUT_NAME) if model.task == BOTTOM_UP else (OUTPUT_NAME,)


def serving_function(net: keras.Model, input_size: tuple[int, int], names=(OUTPUT_NAME,)):
    """tf.function image -> {name: output} with a fixed [1, H, W, 3] input; `names` name the
    network's outputs in order (a single-output network: its last output, "heatmaps")."""
    h, w = input_size

    @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32, name=INPUT_NAME)])
    def serve(image):
        out = net(image, training=False)
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        out = out[-len(names):]
        return {n: tf.identity(o, name=n) for n, o in zip(names, out)}

    return serve


def write_saved_model(model, directory: str | Path) -> Path:
    """Write the export SavedModel (signature ``serving_default``) for a PoseModel."""
    d = Path(directory)
    net = export_network(model)
    module = tf.Module()
    # Track the variables, not the Keras model: saving a model also traces every
    # layer's call on its own, which fails for tfmot's quantised transposed convolutions.
    module.weights = list(net.variables)
    module.serve = serving_function(net, model.input_size, output_names(model))
    tf.saved_model.save(module, str(d), signatures={SIGNATURE_KEY: module.serve})
    return d
