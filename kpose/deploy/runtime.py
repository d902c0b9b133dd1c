"""Exported models (.tflite, .onnx, TF.js folders) as PoseModels, and `kpose.load`.

`load_exported` reads the metadata the file carries and wraps the runtime
(LiteRT, onnxruntime, TF.js in node) so that `predict`, `predict_instances` and
`kpose.evaluate` run the exported model through exactly the same crop, decode
and evaluation code as the Keras model: accuracy tables compare formats, not code paths.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kpose.deploy.graph import OUTPUT_NAME, limb_output
from kpose.deploy.metadata import read_tflite_metadata
from kpose.deploy.onnx import OnnxRunner
from kpose.deploy.onnx import read_metadata as onnx_metadata
from kpose.deploy.tfjs import TfjsRunner
from kpose.deploy.tfjs import read_metadata as tfjs_metadata
from kpose.deploy.tflite import TFLiteRunner
from kpose.model_io import load_model
from kpose.models.official_tflite import is_official_tflite
from kpose.pose_model import PoseModel


def is_exported(path: str | Path) -> bool:
    """A .tflite or .onnx file, or a TF.js folder (model.json)."""
    p = Path(path)
    return p.suffix in (".tflite", ".onnx") or (p / "model.json").exists()


def read_metadata(path: str | Path) -> dict:
    """The kpose metadata of an exported model, whatever its format."""
    p = Path(path)
    if p.suffix == ".tflite":
        return read_tflite_metadata(p)
    if p.suffix == ".onnx":
        return onnx_metadata(p)
    if (p / "model.json").exists():
        return tfjs_metadata(p)
    raise ValueError(f"{p}: not an exported kpose model (.tflite, .onnx, or a folder with model.json)")


def runner(path: str | Path, num_threads: int | None = None):
    """A callable inputs [B, H, W, 3] -> {output name: [B, ...]} for an exported file or folder."""
    p = Path(path)
    if p.suffix == ".tflite":
        return TFLiteRunner(p, num_threads)
    if p.suffix == ".onnx":
        return OnnxRunner(p, num_threads)
    if (p / "model.json").exists():
        return TfjsRunner(p)
    raise ValueError(f"{p}: not an exported model (.tflite, .onnx or a TF.js folder with model.json)")


class _Network:
    """Callable like a Keras model (inputs -> heatmaps, or [heatmaps, pafs]) through a runtime."""

    def __init__(self, run, names: tuple[str, ...]):
        self.run, self.names = run, names

    def __call__(self, inputs, training=False):
        out = self.run(np.asarray(inputs, np.float32))
        if len(self.names) == 1:
            return out[self.names[0]]
        return [out[n] for n in self.names]


def load_exported(path: str | Path, num_threads: int | None = None) -> PoseModel:
    """A PoseModel that runs an exported file; config rebuilt from its metadata."""
    meta = read_metadata(path)
    sk = meta["skeleton"]
    task = meta["model"].get("task", "top_down")
    config = {
        "family": meta["model"]["family"], "variant": meta["model"]["variant"], "task": task,
        "input_size": list(meta["input"]["shape"][1:3]),
        "skeleton": {"name": sk["name"], "keypoints": sk["keypoints"], "flip_pairs": sk["flip_pairs"],
                     "limbs": sk["limbs"], "sigmas": sk.get("oks_sigmas")},
        "codec": meta["codec"], "input": meta["input"],
        "exported": {"path": str(path), "precision": meta["precision"]},
    }
    if "crop" in meta:
        config["crop_padding"] = meta["crop"]["padding"]
    names = tuple(o["name"] for o in meta.get("outputs", [{"name": OUTPUT_NAME}]))
    if task == "bottom_up" and names != (OUTPUT_NAME, limb_output(meta["codec"])[0]):
        raise ValueError(f"{path}: a bottom-up model with a {meta['codec'].get('type')} codec must output "
                         f"{OUTPUT_NAME} and {limb_output(meta['codec'])[0]}, its metadata lists {list(names)}")
    return PoseModel(_Network(runner(path, num_threads), names), config)


def load(path: str | Path, weights: str | Path | None = None) -> PoseModel:
    """`kpose.load`: a kpose run or model folder, an official EfficientPose .h5 or .tflite
    (its weights in kpose's Keras model), or an exported model (.tflite, .onnx, TF.js
    folder), which then runs in its own runtime."""
    if is_exported(path) and not is_official_tflite(path):
        return load_exported(path)
    return load_model(path, weights)
