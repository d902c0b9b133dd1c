"""`kpose demo`: export a model to TF.js into web_demo/models/, build the page, serve it."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from kpose.deploy.exporter import as_pose_model, export, export_name

WEB_DEMO = Path(__file__).resolve().parents[2] / "web_demo"


def _npm(*args: str) -> None:
    if shutil.which("npm") is None:
        raise RuntimeError("the web demo needs node and npm (node >= 18) on PATH")
    subprocess.run(["npm", *args], cwd=WEB_DEMO, check=True)


def build_demo(model, quantization: str | None = None) -> Path:
    """Export `model` to web_demo/models/<name>/, list it in models/index.json, build dist/."""
    if not (WEB_DEMO / "package.json").exists():
        raise FileNotFoundError(f"{WEB_DEMO}: web_demo/ not found; `kpose demo` runs from a source checkout")
    pose_model = as_pose_model(model)
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
