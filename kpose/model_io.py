"""Reading models kpose can build: saved kpose models (float or QAT) and the official
EfficientPose releases (.h5, and .tflite read as weights). Exported files (.tflite, .onnx, TF.js) are read by
kpose.deploy.runtime; `kpose.load` (kpose.loading) takes any of them.

Weights are always assigned to a network rebuilt by kpose's own builder from the
config; no code from a model file is ever executed.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py

from kpose.codecs import HeatmapCodec, PafCodec
from kpose.models import build_network
from kpose.models.efficientpose import INPUT_NORMALIZATION
from kpose.models.official import LOADABLE, OFFICIAL_HEATMAP_SIGMA, load_official_h5
from kpose.models.official_tflite import is_official_tflite, load_official_tflite
from kpose.models.tf_pose_release import load_tf_pose_graph
from kpose.models.quantize import quantize_model
from kpose.pose_model import CONFIG_FILE, WEIGHTS_FILE, PoseModel, model_config
from kpose.skeletons import CMU18, MPII16

# tf-pose-estimation's README setting: 432x368 input (w x h), stride-8 maps.
TF_POSE_INPUT_SIZE = (368, 432)
# Its heatmaps are Gaussians of about this sigma on the stride-8 grid (decoding window only).
TF_POSE_HEATMAP_SIGMA = 1.0


def model_folder(path: str | Path) -> Path:
    """The folder holding kpose.json: `path` itself or a run folder's model/."""
    p = Path(path)
    if p.is_dir() and not (p / CONFIG_FILE).exists() and (p / "model" / CONFIG_FILE).exists():
        p = p / "model"
    if not (p / CONFIG_FILE).exists():
        raise FileNotFoundError(f"{p}: no {CONFIG_FILE} here. {LOADABLE}")
    return p


def saved_config(path: str | Path) -> dict:
    """The config (kpose.json) of a saved model or run folder, without building its network."""
    return json.loads((model_folder(path) / CONFIG_FILE).read_text())


def load_saved(path: str | Path, weights: str | Path | None = None) -> PoseModel:
    """A saved kpose model folder (or run folder): network rebuilt from kpose.json, weights loaded."""
    p = model_folder(path)
    config = saved_config(p)
    net = build_network(config)
    quantization = config.get("quantization")
    if quantization == "qat":
        net = quantize_model(net, config.get("concat_scales"))
        # tfmot names its input QuantizeLayer by a global counter: load by topology
        # (the QAT graph is rebuilt deterministically from the same config).
        net.load_weights(str(weights or p / WEIGHTS_FILE))
    elif quantization is not None:
        raise ValueError(f"{p / CONFIG_FILE}: quantization {quantization!r}; known: qat (or absent)")
    else:
        load_weights(net, weights or p / WEIGHTS_FILE)
    return PoseModel(net, config)


def load_official(path: str | Path) -> PoseModel:
    """An official EfficientPose .h5 or .tflite as a PoseModel in MPII16 order, full-resolution
    maps (a .tflite's weights go into kpose's Keras model, as an .h5's do)."""
    load = load_official_tflite if Path(path).suffix == ".tflite" else load_official_h5
    net, info = load(str(path))
    size = tuple(info["input_size"])
    codec = HeatmapCodec(input_size=size, heatmap_size=size, sigma=OFFICIAL_HEATMAP_SIGMA)
    return PoseModel(net, model_config("efficientpose", info["variant"], size, MPII16, codec, official=info))


def load_tf_pose(path: str | Path, input_size: tuple[int, int] = TF_POSE_INPUT_SIZE) -> PoseModel:
    """tf-pose-estimation's OpenPose-MobileNetV2 frozen graph (.pb) as a bottom-up PoseModel.

    Its weights go into kpose's own builder (the graph is parsed, never run); the model
    takes RGB like every kpose model and outputs CMU18 heatmaps (COCO-17 names plus the
    neck, which grouping uses and COCO evaluation leaves out by name) and its 19 PAFs.
    """
    net, info = load_tf_pose_graph(path, input_size)
    if info["skeleton"] != CMU18.name:
        raise ValueError(f"{path}: {info['num_keypoints']} heatmaps / {info['num_limbs']} limbs; kpose knows "
                         f"the release's CMU-18 layout (18 parts + background, 19 limbs) only")
    size = tuple(int(v) for v in input_size)
    heatmap_size = (size[0] // 8, size[1] // 8)
    codec = PafCodec(input_size=size, heatmap_size=heatmap_size, limbs=CMU18.limbs, sigma=TF_POSE_HEATMAP_SIGMA)
    return PoseModel(net, model_config(info["family"], info["variant"], size, CMU18, codec,
                                       source={k: v for k, v in info.items() if k != "graph_ops"}))


def load_model(path: str | Path, weights: str | Path | None = None) -> PoseModel:
    """A kpose model folder, run folder, official EfficientPose .h5 / .tflite or
    tf-pose-estimation .pb as a PoseModel."""
    p = Path(path)
    if p.is_file() and (p.suffix == ".h5" or is_official_tflite(p)):
        return load_official(p)
    if p.is_file() and p.suffix == ".pb":
        return load_tf_pose(p)
    return load_saved(p, weights)


def load_weights(net, path: str | Path) -> None:
    """Load an h5 weights file by layer name; every layer with weights must be in it,
    except the builder-set input normalisation (older runs saved it as a weightless layer)."""
    with h5py.File(path, "r") as f:
        saved = {n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]}
    fixed = {INPUT_NORMALIZATION, "quant_" + INPUT_NORMALIZATION}
    missing = [l.name for l in net.layers if l.weights and l.name not in saved and l.name not in fixed]
    if missing:
        raise ValueError(f"{path}: no weights for layers {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                         f"the file does not belong to this model config ({CONFIG_FILE})")
    net.load_weights(str(path), by_name=True)
