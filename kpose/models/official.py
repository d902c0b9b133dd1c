"""Load the official EfficientPose Keras releases into kpose's own model.

Only the file's JSON config and weight arrays are read (h5py); the released model is
never deserialised, since it contains marshalled Lambda code. The TFLite releases
(II and II_LITE have no Keras file) are read by `kpose.models.official_tflite`.

Input convention found in the releases: the official graphs (.h5 and .tflite) start
directly with the stem convolution (and, for I-IV, the average pooling of the
low-resolution stream) and expect *already normalised* RGB input: RT and I-IV =
torch-style ImageNet normalisation (x / 255 - mean) / std, the Lite ones = x / 127.5 - 1
(the official `preprocess` uses Keras' `preprocess_input` modes "torch" and "tf").
kpose puts that normalisation inside the graph (`input_normalization`, a frozen 1x1
depthwise convolution), so kpose's models take RGB float pixels in 0..255.

Keypoint order: the official confidence maps are in EFFICIENTPOSE_MPII_ORDER. By
default `load_official_h5` permutes the output channels of the confidence heads and
the upscaling layers, so the kpose model outputs MPII16 order directly (an exact
re-indexing; no extra op). The PAF output (pass 1) is left in the official limb order.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

from kpose._tf import keras
from kpose.models.efficientnet_stem import is_lite, stem_blocks
from kpose.models.efficientpose import (
    DETECTION_STRIDE, INPUT_NORMALIZATION, NORMALIZATIONS, VARIANTS, build_efficientpose,
    normalization_scale_offset,
)
from kpose.models.weights import Release, find_weights
from kpose.skeletons import EFFICIENTPOSE_MPII_ORDER, MPII16, efficientpose_to_mpii

# Layers whose output channels are keypoints (the official heads after pass 1).
CONF_CONVS = ("pass2_detection1_confs", "pass3_detection2_confs")
TRAINING_ONLY = ("pass1_skeleton_pafs", "pass2_detection1_confs")


def read_official_config(path: str) -> dict:
    """The Keras model config (JSON) stored in an official .h5 file."""
    with h5py.File(path, "r") as f:
        raw = f.attrs.get("model_config")
        weights_only = "layer_names" in f.attrs
    if raw is None:
        what = ("a weights-only file (layer weights, no model config), such as a kpose model's "
                "weights.h5: load its folder instead, kpose.load('<run>/model')" if weights_only
                else "an HDF5 file without a Keras model in it")
        raise ValueError(f"{path} is {what}. {LOADABLE}")
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


# What kpose.load accepts, for errors about what it was given.
LOADABLE = ("kpose.load takes a kpose run or model folder, an official EfficientPose .h5 (RT, RT_LITE, I, "
            "I_LITE) or .tflite (any release), a tf-pose-estimation .pb, or an exported .tflite / .onnx / "
            "TF.js folder")


def _signature(variant: str) -> tuple:
    """What tells a variant's release apart by its layer names: the Lite network's scope,
    else (two streams?, blocks in the high-resolution stream's stride-8 stage)."""
    cfg = VARIANTS[variant]
    if is_lite(cfg["high"]):
        return ("lite", cfg["high"])
    _, blocks = stem_blocks(cfg["high"], 3)
    return ("keras", cfg["low"] is not None, sum(b.name.startswith("block3") for b in blocks))


def variant_from_names(names: Iterable[str]) -> str:
    """The EfficientPose variant whose release has these layer (or tensor) names."""
    names = list(names)
    scopes = {n.split("/")[0] for n in names if n.startswith("efficientnet-lite")}
    if scopes:
        found = ("lite", scopes.pop()[len("efficientnet-"):])
    else:
        stage3 = {m.group(1) for n in names if (m := re.match(r"block3([a-z])_project_conv_res1(/|$)", n))}
        found = ("keras", any("_res2" in n for n in names), len(stage3))
    for variant in VARIANTS:
        if _signature(variant) == found:
            return variant
    raise ValueError(f"not an EfficientPose {' / '.join(v.upper() for v in VARIANTS)} model "
                     "(unrecognised layer names)")


def detect_variant(config: dict) -> str:
    """The EfficientPose variant ('rt', 'i', ..., 'ii_lite') of an official model config."""
    return variant_from_names(layer.get("name") or layer.get("config", {}).get("name", "")
                              for layer in config.get("config", {}).get("layers", []))


def _input_size(config: dict, variant: str) -> tuple[int, int]:
    shape = config["config"]["layers"][0]["config"]["batch_input_shape"]
    h, w = shape[1], shape[2]
    if h is None or w is None:
        # The Lite .h5 files are stored fully convolutional; their TFLite releases run
        # at the variant's size.
        size = VARIANTS[variant]["input_size"]
        return size, size
    return int(h), int(w)


def _short(weight_name: str) -> str:
    """'stem_bn/gamma:0' -> 'gamma'; matches kpose and official weights by role."""
    return weight_name.split("/")[-1].split(":")[0]


def permute_keypoints(layer_name: str, arrays: dict[str, np.ndarray], perm: np.ndarray) -> dict:
    out = dict(arrays)
    if "bias" in out:
        out["bias"] = out["bias"][perm]
    if layer_name in CONF_CONVS:
        out["kernel"] = out["kernel"][..., perm]
    else:
        # Conv2DTranspose kernels are (h, w, out, in); both sides are keypoint channels.
        out["kernel"] = out["kernel"][:, :, perm][:, :, :, perm]
    return out


def load_official_h5(
    path: str,
    keypoint_order: str = "mpii16",
    training_outputs: bool = False,
    input_size: int | tuple | None = None,
) -> tuple[keras.Model, dict]:
    """Build kpose's EfficientPose for the official file at `path` and assign its weights.

    keypoint_order: "mpii16" (kpose's order, see module docstring) or "efficientpose_mpii"
      (the official channel order, unchanged weights).
    training_outputs: also build the pass-1 PAF and pass-2 heads; the Lite releases do
      not contain them, so this raises for them.
    input_size: defaults to the release's resolution (VARIANTS[variant]["input_size"]
      where the file does not fix it).
    Returns (model, info); info records variant, input size, normalisation, order.
    Raises ValueError naming the layer on any missing or mismatched weight.
    """
    if keypoint_order not in ("mpii16", "efficientpose_mpii"):
        raise ValueError(f"keypoint_order must be 'mpii16' or 'efficientpose_mpii', got {keypoint_order!r}")
    config = read_official_config(path)
    try:
        variant = detect_variant(config)
    except ValueError as e:
        raise ValueError(f"{path}: a Keras model ({config.get('class_name')} "
                         f"{config.get('config', {}).get('name')!r}), {e}. {LOADABLE}") from None
    size = _input_size(config, variant) if input_size is None else input_size
    model = build_efficientpose(variant, num_keypoints=16, input_size=size,
                                training_outputs=training_outputs, num_limbs=len(MPII16.limbs))
    perm = efficientpose_to_mpii()
    permuted = set(CONF_CONVS) | {layer.name for layer in model.layers
                                   if isinstance(layer, keras.layers.Conv2DTranspose)}

    with h5py.File(path, "r") as f:
        group = f["model_weights"]
        official = {n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]}
        official_with_weights = {n for n in official if len(group[n].attrs["weight_names"])}
        used = set()
        for layer in model.layers:
            if not layer.weights or layer.name == INPUT_NORMALIZATION:
                continue  # kpose's own in-graph normalisation: set by the builder
            if layer.name not in official_with_weights:
                raise ValueError(f"layer {layer.name!r} has no weights in {os.path.basename(path)}")
            g = group[layer.name]
            arrays = {}
            for wname in g.attrs["weight_names"]:
                wname = wname.decode() if isinstance(wname, bytes) else wname
                arrays[_short(wname)] = np.asarray(g[wname])
            if keypoint_order == "mpii16" and layer.name in permuted:
                arrays = permute_keypoints(layer.name, arrays, perm)
            values = []
            for w in layer.weights:
                key = _short(w.name)
                if key not in arrays:
                    raise ValueError(f"layer {layer.name!r}: weight {key!r} missing in the official file "
                                     f"(has {sorted(arrays)})")
                if tuple(arrays[key].shape) != tuple(w.shape):
                    raise ValueError(f"layer {layer.name!r}: weight {key!r} has shape {arrays[key].shape} "
                                     f"in the official file, kpose expects {tuple(w.shape)}")
                values.append(arrays[key])
            if len(values) != len(arrays):
                raise ValueError(f"layer {layer.name!r}: official file has weights {sorted(arrays)}, "
                                 f"kpose uses {[_short(w.name) for w in layer.weights]}")
            layer.set_weights(values)
            used.add(layer.name)
        unused = sorted(official_with_weights - used)
        unexpected = [n for n in unused if n not in TRAINING_ONLY]
        if unexpected:
            raise ValueError(f"official layers not matched by kpose's model: {unexpected}")

    return model, official_info(variant, size, keypoint_order, unused, os.path.basename(path))


def official_info(variant: str, size, keypoint_order: str, unused: list[str], source: str) -> dict:
    """What a loaded official model records: variant, input size, normalisation, order."""
    h, w = (size, size) if np.isscalar(size) else size
    norm = VARIANTS[variant]["normalization"]
    return {
        "variant": variant,
        "input_size": [int(h), int(w)],
        "input": "RGB float32 pixels in 0..255, NHWC; normalisation is inside the model",
        "normalization": dict(NORMALIZATIONS[norm], in_graph=True,
                              layer="input_normalization"),
        "official_input": f"official .h5/.tflite take the normalised image ({NORMALIZATIONS[norm]['formula']})",
        "keypoint_order": keypoint_order,
        "keypoints": list(MPII16.keypoints if keypoint_order == "mpii16" else EFFICIENTPOSE_MPII_ORDER),
        "num_limbs": len(MPII16.limbs),
        "output_stride": {"pass1_skeleton_pafs": DETECTION_STRIDE, "pass2_detection1_confs": DETECTION_STRIDE,
                          "pass3_detection2_confs": DETECTION_STRIDE, "upscaled_confs": 1},
        "unused_official_layers": unused,
        "source": source,
    }


def official_to_mpii(maps: np.ndarray) -> np.ndarray:
    """Reorder official EfficientPose keypoint channels (last axis) to kpose's MPII16 order."""
    return np.asarray(maps)[..., efficientpose_to_mpii()]


def normalize_like_official(image: np.ndarray, variant: str) -> np.ndarray:
    """RGB 0..255 image -> the normalised input the official graphs (.h5/.tflite) expect."""
    scale, offset = normalization_scale_offset(VARIANTS[variant]["normalization"])
    return np.asarray(image, np.float32) * np.float32(scale) + np.float32(offset)


# The release's confidence maps are Gaussian-like blobs of about this standard
# deviation in input pixels (median FWHM / 2.355 over the MPII samples, both
# variants); it only sets the codec's decoding window.
OFFICIAL_HEATMAP_SIGMA = 8.0


# The release files, by variant (github.com/daniegr/EfficientPose @78e4bd1, Apache-2.0):
# Keras files where the repository has them, else its TFLite files (II, II_LITE), whose
# float16 weights kpose.models.official_tflite reads; the repository names RT_LITE's
# Keras file EfficientPoseRTLite.h5.
OFFICIAL_URL = "https://github.com/daniegr/EfficientPose/tree/master/models"
_RAW = "https://github.com/daniegr/EfficientPose/raw/78e4bd1/models/"
OFFICIAL_RELEASES = {
    "rt": Release(("EfficientPoseRT.h5",), _RAW + "keras/EfficientPoseRT.h5",
                  "508943cfdeb1d102d69aff4280b805c023585b0d9ae530344fb4c4fad3a175f1"),
    "rt_lite": Release(("EfficientPoseRT_LITE.h5", "EfficientPoseRTLite.h5"), _RAW + "keras/EfficientPoseRTLite.h5",
                       "ce0c91259b075180177d070d0be1e71ff8695d7c123745efb950743aa90699ae"),
    "i": Release(("EfficientPoseI.h5",), _RAW + "keras/EfficientPoseI.h5",
                 "003aea100c30c68103fb4c383fb8782f78adbea7a45451af85334327b79fc5bd"),
    "i_lite": Release(("EfficientPoseI_LITE.h5",), _RAW + "keras/EfficientPoseI_LITE.h5",
                      "3eb6eb2a595e47d3104590e6484533d64534e4b994397a9dd2bd3e5a11430516"),
    "ii": Release(("EfficientPoseII.tflite",), _RAW + "tflite/EfficientPoseII.tflite",
                  "0659b687e8c0d33f63855c2b196d355b317490a586275609e20787861a305ac3"),
    "ii_lite": Release(("EfficientPoseII_LITE.tflite",), _RAW + "tflite/EfficientPoseII_LITE.tflite",
                       "e0d23ecf1f689e9394a2f3768d5e9aebc8457c5e88ef418fea35fe727f5c92cc"),
}


def official_weights_path(variant: str) -> Path:
    """The official release file of an EfficientPose variant; FileNotFoundError with the fix."""
    if variant not in OFFICIAL_RELEASES:
        raise ValueError(f"no official release for EfficientPose variant {variant!r}; "
                         f"released: {', '.join(OFFICIAL_RELEASES)} (set the recipe's init to a run "
                         f"folder or null)")
    return find_weights(OFFICIAL_RELEASES[variant], "efficientpose",
                        f"the official EfficientPose {variant.upper()} weights", OFFICIAL_URL)
