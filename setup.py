"""kpose: pose estimation that trains in one call and ships to phones and browsers."""
import shutil
import subprocess
import tempfile
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
version = {}
exec((ROOT / "kpose" / "version.py").read_text(), version)

WEB_DEMO = ROOT / "web_demo"
# What bundling the page reads from web_demo/ (npm installs the locked packages afresh).
WEB_SOURCES = ("package.json", "package-lock.json", "index.html", "src", "tools/build.mjs")


def build_web_page(dest: Path) -> None:
    """The demo page (web_demo/ bundled by esbuild: index.html, app.js, style.css, wasm/)
    built into `dest`, from a copy of web_demo/ with exactly the locked npm packages
    (npm ci), so neither the source tree nor its node_modules is touched. Without npm the
    build stops: a wheel without its page would only fail later, in `kpose demo`."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        raise SystemExit("error: building kpose bundles the web demo (web_demo/) into the package "
                         "(kpose/deploy/web/) with npm, and node or npm is not on PATH: install node >= 18 "
                         "with npm and build again")
    missing = [name for name in WEB_SOURCES if not (WEB_DEMO / name).exists()]
    if missing:
        raise SystemExit(f"error: {WEB_DEMO} lacks {', '.join(missing)}: build kpose from a full source "
                         f"checkout or sdist")
    with tempfile.TemporaryDirectory(prefix="kpose-web-build-") as tmp:
        for name in WEB_SOURCES:
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            copy = shutil.copytree if (WEB_DEMO / name).is_dir() else shutil.copy2
            copy(WEB_DEMO / name, Path(tmp) / name)
        shutil.rmtree(dest, ignore_errors=True)
        for cmd in ([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"],
                    [node, "tools/build.mjs", "--out", str(dest.resolve()), "--no-sourcemap"]):
            if subprocess.run(cmd, cwd=tmp).returncode:
                raise SystemExit(f"error: building the web demo page: `{' '.join(cmd)}` failed in a copy of "
                                 f"{WEB_DEMO} (its output is above)")


class BuildPyWithWebPage(build_py):
    """build_py, then the demo page into the built package (a wheel ships it as
    kpose/deploy/web/). Editable installs skip it: a source checkout builds the page from
    web_demo/ when `kpose demo` runs."""

    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):
            build_web_page(Path(self.build_lib) / "kpose" / "deploy" / "web")

setup(
    name="kpose",
    version=version["__version__"],
    description="Human pose estimation in TensorFlow/Keras for TFLite and TF.js",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["kpose", "kpose.*"]) + ["kpose._recipes"],
    # Recipes live at the top of the repository (recipes/) but ship inside the
    # installed package as kpose._recipes, so a wheel finds them too.
    package_dir={"kpose._recipes": "recipes"},
    package_data={"kpose._recipes": ["*.yaml"]},
    install_requires=[
        "tensorflow==2.19.0",
        "tf-keras~=2.19.0",
        "tensorflow-model-optimization==0.8.1",
        "ai-edge-litert",
        "numpy",
        "pillow",
        "pycocotools",
        "pyyaml",
        "scipy",
        "tqdm",
        "matplotlib",
        "h5py",
    ],
    extras_require={
        "export": ["tf2onnx==1.17.0", "onnxruntime", "tensorflowjs==4.22.0", "ydf<0.16"],
        "video": ["imageio>=2.31", "av"],
        "test": ["pytest", "pytest-xdist", "tf2onnx==1.17.0", "onnxruntime", "tensorflowjs==4.22.0", "ydf<0.16",
                 "imageio>=2.31", "av", "motmetrics"],
    },
    entry_points={"console_scripts": ["kpose=kpose.cli:main"]},
    cmdclass={"build_py": BuildPyWithWebPage},
)
