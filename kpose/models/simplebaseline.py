"""Simple Baselines (Xiao, Wu and Wei, ECCV 2018): Xiao et al.'s top-down single-person model.

Not to be confused with SimplePose (Li et al., AAAI 2020), a bottom-up method that the
literature also calls "simple pose"; kpose's recipes name them `simplebaseline_*` and
`simplepose_*`.

A headless ImageNet backbone (stride 32, kpose.models.backbones) followed by three
transposed convolutions (4x4, stride 2, 256 filters, no bias, each with batch norm and
ReLU) and a 1x1 convolution to one heatmap per keypoint: stride-4 heatmaps (64x48 for the
paper's 256x192 crops), decoded by kpose's heatmap codec (DARK). Initialisation follows
the paper: normal(0, 0.001) for the head's convolutions.

Input normalisation is inside the graph (`input_normalization`, a frozen 1x1 convolution
computing, per output channel, x[source channel] * scale + offset), so every variant takes
RGB 0..255 like every kpose model, whatever its backbone's weights expect: ResNet-50's
caffe convention (BGR, minus the ImageNet means) is a channel permutation in that kernel.
A convolution rather than a Rescaling layer because it quantises as one int8 op.

`backbone_weights(variant, source)` loads pretrained backbone weights (recipe key
model.backbone_weights): "imagenet" takes the tf_keras.applications weights (downloaded by
the applications, cached in ~/.keras/models), a path takes a local Keras .h5 weights file
with the backbone's layer names.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from kpose._tf import keras
from kpose.models.backbones import BACKBONES, Backbone
from kpose.models.efficientpose import INPUT_NORMALIZATION, normalization_scale_offset
from kpose.models.registry import OutputSpec, input_hw

BACKBONE_STRIDE = 32
OUTPUT_STRIDE = 4
DECONV_LAYERS = 3
DECONV_FILTERS = 256
OUTPUT_NAME = "heatmaps"
# The paper's crop (height, width) and heatmaps at stride 4 (64x48).
REFERENCE_INPUT_SIZE = (256, 192)
# variant -> backbone (kpose.models.backbones.BACKBONES).
VARIANTS = {"resnet50": "resnet50", "resnet18": "resnet18", "mobilenetv2": "mobilenetv2",
            "mobilenetv3s": "mobilenetv3s"}
# ImageNet means in 0..255, BGR: the caffe-style input of ResNet-50's applications weights.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_HEAD_INIT = {"class_name": "RandomNormal", "config": {"stddev": 0.001}}


def normalization_weights(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Kernel [1, 1, 3, 3] and bias [3] of the input_normalization convolution for RGB 0..255:
    "caffe" (BGR minus the ImageNet means), or an RGB kind of efficientpose's
    normalization_scale_offset ("imagenet", "symmetric")."""
    if kind == "caffe":
        source, scale, offset = (2, 1, 0), [1.0] * 3, [-m for m in CAFFE_MEAN_BGR]
    else:
        (scale, offset), source = normalization_scale_offset(kind), (0, 1, 2)
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    for out, src in enumerate(source):
        kernel[0, 0, src, out] = scale[out]
    return kernel, np.asarray(offset, np.float32)


def _backbone(variant: str) -> Backbone:
    if variant not in VARIANTS:
        raise ValueError(f"unknown simplebaseline variant {variant!r}; known: {', '.join(VARIANTS)}")
    return BACKBONES[VARIANTS[variant]]


def build_simplebaseline(variant: str = "resnet50", num_keypoints: int = 17, num_limbs: int = 0,
                         input_size: int | tuple | None = REFERENCE_INPUT_SIZE,
                         training_outputs: bool = False) -> keras.Model:
    """Build Simple Baselines on `variant`'s backbone, random weights, as a flat tf_keras model.

    input_size: int or (h, w), multiples of 32 (None: any); input is RGB float 0..255.
    Output `heatmaps`: [B, h / 4, w / 4, num_keypoints]. num_limbs and training_outputs are the
    registry's signature: the heatmaps are the only supervised output, with or without.
    """
    backbone = _backbone(variant)
    h, w = input_hw(input_size, BACKBONE_STRIDE)
    inputs = keras.Input((h, w, 3), name="image")
    x = keras.layers.Conv2D(3, 1, trainable=False, name=INPUT_NORMALIZATION)(inputs)
    x = backbone.build(x)
    for i in range(1, DECONV_LAYERS + 1):
        x = keras.layers.Conv2DTranspose(DECONV_FILTERS, 4, strides=2, padding="same", use_bias=False,
                                         kernel_initializer=_HEAD_INIT, name=f"deconv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"deconv{i}_bn")(x)
        x = keras.layers.ReLU(name=f"deconv{i}_relu")(x)
    x = keras.layers.Conv2D(num_keypoints, 1, kernel_initializer=_HEAD_INIT, name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, x, name=f"simplebaseline_{variant}")
    # Set after construction so the layer config does not embed the arrays.
    model.get_layer(INPUT_NORMALIZATION).set_weights(list(normalization_weights(backbone.normalization)))
    return model


def simplebaseline_outputs(variant: str, num_keypoints: int, num_limbs: int) -> tuple[OutputSpec, ...]:
    """The one supervised output: stride-4 keypoint heatmaps, also the deployed output."""
    _backbone(variant)
    return (OutputSpec(OUTPUT_NAME, "heatmaps", OUTPUT_STRIDE, num_keypoints, inference=True),)


# ---- pretrained backbone weights ---------------------------------------------------------

def _head_layer(name: str) -> bool:
    return name == INPUT_NORMALIZATION or name == OUTPUT_NAME or name.startswith("deconv")


def read_h5_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """{layer name: its weight arrays} of a Keras .h5 weights (or whole-model) file."""
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        if "layer_names" not in group.attrs:
            raise ValueError(f"model.backbone_weights={str(path)!r}: not a Keras .h5 weights file (no "
                             f"layer_names); save one with model.save_weights('....h5'), or set it to null")
        out = {}
        for raw in group.attrs["layer_names"]:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in group[name].attrs["weight_names"]]
            if names:
                out[name] = [np.asarray(group[name][n]) for n in names]
    return out


def _imagenet_weights(variant: str) -> tuple[dict[str, list[np.ndarray]], str]:
    backbone = _backbone(variant)
    if backbone.imagenet is None:
        raise ValueError(
            f"recipe model.backbone_weights: imagenet: tf_keras.applications has no ImageNet weights for "
            f"simplebaseline {variant} ({backbone.description}); set model.backbone_weights to a local .h5 "
            f"weights file with its layer names (conv1_conv, conv2_block1_1_conv, ...) or to null (random "
            f"initialisation)")
    try:
        reference = backbone.imagenet()
    except Exception as e:  # the applications' download: no network, proxy, checksum
        raise FileNotFoundError(
            f"recipe model.backbone_weights: imagenet: fetching the ImageNet weights of "
            f"{backbone.description} (tf_keras.applications, cached in ~/.keras/models) failed: {e}. "
            f"Without a network, set model.backbone_weights to a local .h5 weights file or to null") from e
    return {l.name: l.get_weights() for l in reference.layers if l.weights}, f"ImageNet ({backbone.description})"


def backbone_weights(variant: str, source: str) -> Callable[[keras.Model], str]:
    """A loader (network -> one-line summary) of the pretrained backbone weights `source`:
    "imagenet" or the path of a Keras .h5 file. Fails here, before any training work, when
    the weights cannot be had (no ImageNet release for the backbone, no network, no file)."""
    if str(source) == "imagenet":
        weights, origin = _imagenet_weights(variant)
    else:
        path = Path(os.path.expandvars(os.path.expanduser(str(source))))
        if not path.is_file():
            raise FileNotFoundError(f"recipe model.backbone_weights={str(source)!r}: no such file; give a Keras "
                                    f".h5 weights file, imagenet (downloaded) or null (random initialisation)")
        weights, origin = read_h5_weights(path), str(path)

    def load(net: keras.Model) -> str:
        layers = [l for l in net.layers if l.weights and not _head_layer(l.name)]
        missing = [l.name for l in layers if l.name not in weights]
        if missing:
            raise ValueError(f"model.backbone_weights: {origin} has no weights for the {variant} backbone's "
                             f"layers {missing[:4]}{' ...' if len(missing) > 4 else ''}: it is not a {variant} "
                             f"weights file (layer names as in kpose.models.backbones)")
        for layer in layers:
            shapes = [w.shape for w in layer.get_weights()]
            if [w.shape for w in weights[layer.name]] != shapes:
                raise ValueError(f"model.backbone_weights: {origin}: layer {layer.name!r} has shapes "
                                 f"{[w.shape for w in weights[layer.name]]}, the {variant} backbone {shapes}")
            layer.set_weights(weights[layer.name])
        return f"{len(layers)} backbone layers from {origin}"

    return load


__all__ = ["build_simplebaseline", "simplebaseline_outputs", "backbone_weights", "normalization_weights",
           "read_h5_weights", "VARIANTS", "OUTPUT_STRIDE", "BACKBONE_STRIDE", "REFERENCE_INPUT_SIZE"]
