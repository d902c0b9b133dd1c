"""The exported graph: a PoseModel's inference network behind one named signature.

Every format is converted from one serving function of the network (or of an
equal-function copy a converter needs: `export_network`): TFLite from the function frozen,
TF.js from a SavedModel of it (`write_saved_model`), ONNX from the network. Its
``serving_default`` signature takes
``image`` (float32 [1, H, W, 3], RGB 0..255; normalisation is in the graph) and
returns ``heatmaps`` (float32 [1, h, w, K], channels in the skeleton's order) and,
for bottom-up models, the limb maps their codec groups people with: ``pafs`` (PafCodec:
float32 [1, h, w, 2L], limb (x, y) pairs in the codec's limb order) or ``limb_heatmaps``
(LimbHeatmapCodec: float32 [1, h, w, L], one map per codec limb). Decoding stays outside the graph, so the exported model has
only delegate-friendly ops (no ARG_MAX / GATHER_ND / CAST).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kpose._tf import keras, tf
from kpose.codecs import HeatmapCodec
from kpose.models import BOTTOM_UP, TOP_DOWN, get_family, network_outputs
from kpose.models.backbones import HardSigmoid
from kpose.models.concat_scales import CONCAT_SCALE_SAMPLES, concat_scales, with_concat_scales
from kpose.models.quantize import integer_network
from kpose.pose_model import PoseModel

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "image"
OUTPUT_NAME = "heatmaps"
PAF_OUTPUT_NAME = "pafs"
LIMB_HEATMAP_OUTPUT_NAME = "limb_heatmaps"
# A bottom-up codec's type -> its limb maps output: (name, channels per codec limb, content).
# The JS and Kotlin runtimes read the same from the metadata (web_demo/src/bottom-up.js,
# export/android/KposeMetadata.kt): a type missing here cannot be exported or run.
LIMB_OUTPUTS = {"paf": (PAF_OUTPUT_NAME, 2, "part_affinity_fields"),
                "limb_heatmap": (LIMB_HEATMAP_OUTPUT_NAME, 1, "limb_heatmaps")}


def export_network(model, precision: str = "fp32", format: str = "tflite",
                   calibration: np.ndarray | None = None) -> keras.Model:
    """The PoseModel's inference network (outputs in the order its family declares), or an
    equal-function copy a converter needs:

    * TFLite int8 (post-training quantisation; `calibration`: its representative inputs):
      layers TFLite's int8 converter would leave in float written in ops it quantises
      (ELU; kpose.models.quantize.integer_network), and concatenations of inputs with very
      different ranges rescaled so that each keeps its own int8 grid
      (kpose.models.concat_scales, measured on the calibration inputs); QAT models are
      already written that way;
    * TF.js: batch norms folded into their convolutions (`fold_batch_norms`);
    * TF.js and ONNX: hard-sigmoids in their clip form (`HardSigmoid(clip=True)`).
    """
    net = model.keras_model
    if format == "tflite" and precision == "int8" and model.config.get("quantization") != "qat":
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 export needs calibration inputs (representative data); "
                             "pass calibration= a data spec or an array [N, H, W, 3]")
        net = integer_network(net)
        return with_concat_scales(net, concat_scales(net, calibration[:CONCAT_SCALE_SAMPLES]))
    if format == "tfjs":
        return fold_batch_norms(_clipped_hard_sigmoids(net))
    if format == "onnx":
        return _clipped_hard_sigmoids(net)
    return net


def _clipped_hard_sigmoids(net: keras.Model) -> keras.Model:
    """A copy of `net` whose HardSigmoid layers compute in their clip form (the same function
    in ops the TF.js and ONNX converters take: kpose.models.backbones.HardSigmoid); `net`
    itself when it has none."""
    if not any(isinstance(layer, HardSigmoid) for layer in net.layers):
        return net

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, HardSigmoid):
            config["clip"] = True
        return layer.__class__.from_config(config)

    out = keras.models.clone_model(net, clone_function=clone)
    out.set_weights(net.get_weights())
    return out


_FOLDABLE = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Conv2DTranspose)


def _folds(net: keras.Model) -> dict:
    """{batch norm name: the Conv2D / DepthwiseConv2D / Conv2DTranspose feeding only it} for
    foldable pairs."""
    folds = {}
    for layer in net.layers:
        if type(layer) is not keras.layers.BatchNormalization or len(layer._inbound_nodes) != 1:
            continue
        src = layer._inbound_nodes[0].inbound_layers
        src = src[0] if isinstance(src, list) and len(src) == 1 else src
        if (type(src) in _FOLDABLE and len(src._outbound_nodes) == 1
                and list(np.atleast_1d(layer.axis)) in ([3], [-1])):
            folds[layer.name] = src
    return folds


def fold_batch_norms(net: keras.Model) -> keras.Model:
    """A copy of `net` in which every batch norm that follows a Conv2D / DepthwiseConv2D /
    Conv2DTranspose (its only consumer) is folded into that convolution's kernel and bias
    with its moving statistics (inference mode): the same function up to float rounding;
    `net` itself when there is none.

    TF.js needs it: its converter folds a batch norm only when a convolution op feeds it
    directly, but a dilated convolution is SpaceToBatchND -> conv -> BatchToSpaceND in the
    graph, so that batch norm stays and grappler fuses it with the following ReLU into
    _FusedBatchNormEx, an op TF.js does not have (Lightweight OpenPose's dilated blocks).
    """
    folds = _folds(net)
    if not folds:
        return net
    bn_of = {conv.name: net.get_layer(bn) for bn, conv in folds.items()}

    def clone(layer):
        if layer.name in folds:
            return keras.layers.Activation("linear", name=layer.name)
        config = layer.get_config()
        if layer.name in bn_of:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    out = keras.models.clone_model(net, clone_function=clone)
    for layer in net.layers:
        if layer.name in folds or not layer.weights:
            continue
        weights = layer.get_weights()
        if layer.name in bn_of:
            weights = _folded(layer, bn_of[layer.name])
        out.get_layer(layer.name).set_weights(weights)
    return out


def _folded(conv, bn) -> list[np.ndarray]:
    """Kernel and bias of `conv` followed by inference-mode `bn`, as one convolution."""
    f64 = np.float64
    kernel = conv.get_weights()[0].astype(f64)
    bias = conv.bias.numpy().astype(f64) if conv.use_bias else 0.0
    gamma = bn.gamma.numpy().astype(f64) if bn.scale else 1.0
    beta = bn.beta.numpy().astype(f64) if bn.center else 0.0
    scale = gamma / np.sqrt(bn.moving_variance.numpy().astype(f64) + bn.epsilon)
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        # Output channel o of a depthwise kernel [kh, kw, cin, mult] is (c, m) = divmod(o, mult).
        kernel = kernel * np.reshape(scale, kernel.shape[2:])
    elif isinstance(conv, keras.layers.Conv2DTranspose):
        kernel = kernel * np.reshape(scale, (1, 1, -1, 1))  # [kh, kw, out, in]: output channels on axis 2
    else:
        kernel = kernel * scale
    bias = (bias - bn.moving_mean.numpy().astype(f64)) * scale + beta
    return [kernel.astype(np.float32), bias.astype(np.float32)]


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


def limb_output(codec: dict) -> tuple[str, int, str]:
    """(name, channels per limb, content) of the limb maps output of a bottom-up model whose
    codec is `codec` (its to_dict(), as the metadata stores it)."""
    kind = codec.get("type")
    if kind not in LIMB_OUTPUTS:
        raise ValueError(f"codec type {kind!r} has no limb maps output a bottom-up model can export; "
                         f"known: {', '.join(LIMB_OUTPUTS)} (kpose.deploy.graph.LIMB_OUTPUTS)")
    return LIMB_OUTPUTS[kind]


def output_names(model) -> tuple[str, ...]:
    """Names of the exported outputs: heatmaps (top-down); heatmaps and the codec's limb maps,
    pafs or limb_heatmaps (bottom-up)."""
    return (OUTPUT_NAME, limb_output(model.codec.to_dict())[0]) if model.task == BOTTOM_UP else (OUTPUT_NAME,)


def serving_function(net: keras.Model, input_size: tuple[int, int], names=(OUTPUT_NAME,)):
    """tf.function image -> {name: output} with a fixed [1, H, W, 3] input; `names` name the
    network's outputs in order (a single-output network: its last output, "heatmaps")."""
    h, w = input_size

    @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32, name=INPUT_NAME)], autograph=False)
    def serve(image):
        out = net(image, training=False)
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        out = out[-len(names):]
        return {n: tf.identity(o, name=n) for n, o in zip(names, out)}

    return serve


def export_function(model, net: keras.Model | None = None):
    """The export serving function of a PoseModel (of `net`, one of its export networks,
    when given): what every format is converted from."""
    net = export_network(model) if net is None else net
    return serving_function(net, model.input_size, output_names(model))


def write_saved_model(model, directory: str | Path, net: keras.Model | None = None) -> Path:
    """Write the export SavedModel (signature ``serving_default``) for a PoseModel
    (of `net`, one of its export networks, when given)."""
    d = Path(directory)
    net = export_network(model) if net is None else net
    module = tf.Module()
    # Track the variables, not the Keras model: saving a model also traces every
    # layer's call on its own, which fails for tfmot's quantised transposed convolutions.
    module.weights = list(net.variables)
    module.serve = export_function(model, net)
    # Without the gradients of custom-gradient ops (tfmot's fake quantisation has one per
    # quantiser): nothing exported is differentiated, and tracing them made a QAT network's
    # SavedModel ~3x slower to write and ~2x slower for the converters to load.
    tf.saved_model.save(module, str(d), signatures={SIGNATURE_KEY: module.serve},
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    return d
