"""Exported models (.tflite, .onnx, TF.js folders) as PoseModels.

`load_exported` reads the metadata the file carries and wraps the runtime
(LiteRT, onnxruntime, TF.js in node) so that `predict`, `predict_instances` and
`kpose.evaluate` run the exported model through exactly the same crop, decode
and evaluation code as the Keras model: accuracy tables compare formats, not code paths.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def read_metadata(path: str | Path) -> dict:
    """The kpose metadata of an exported model, whatever its format."""
    p = Path(path)
    if p.suffix == ".tflite":
        from kpose.deploy.metadata import read_tflite_metadata
        return read_tflite_metadata(p)
    if p.suffix == ".onnx":
        from kpose.deploy.onnx import read_metadata as onnx_meta
        return onnx_meta(p)
    if (p / "model.json").exists():
        from kpose.deploy.tfjs import read_metadata as tfjs_meta
        return tfjs_meta(p)
    raise ValueError(f"{p}: not an exported kpose model (.tflite, .onnx, or a folder with model.json)")


class _Network:
    """Callable like a Keras model: crops -> heatmaps, through an exported runtime."""

    def __init__(self, run):
        self.run = run

    def __call__(self, crops, training=False):
        return self.run(np.asarray(crops, np.float32))["heatmaps"]


def load_exported(path: str | Path, num_threads: int | None = None):
    """A PoseModel that runs an exported file; config rebuilt from its metadata."""
    from kpose.deploy.exporter import runner
    from kpose.pose_model import PoseModel

    meta = read_metadata(path)
    config = {
        "family": meta["model"]["family"], "variant": meta["model"]["variant"],
        "input_size": list(meta["input"]["shape"][1:3]), "skeleton": meta["skeleton"]["name"],
        "keypoints": meta["skeleton"]["keypoints"], "flip_pairs": meta["skeleton"]["flip_pairs"],
        "limbs": meta["skeleton"]["limbs"], "codec": meta["codec"], "input": meta["input"],
        "crop_padding": meta["crop"]["padding"],
        "exported": {"path": str(path), "precision": meta["precision"]},
    }
    return PoseModel(_Network(runner(path, num_threads)), config)
