"""kpose: pose estimation that trains in one call and ships to phones and browsers."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
version = {}
exec((ROOT / "kpose" / "version.py").read_text(), version)

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
        "tqdm",
        "matplotlib",
        "h5py",
    ],
    extras_require={
        "export": ["tf2onnx==1.17.0", "onnxruntime", "tensorflowjs==4.22.0", "ydf<0.16"],
        "video": ["imageio>=2.31", "av"],
        "test": ["pytest", "tf2onnx==1.17.0", "onnxruntime", "tensorflowjs==4.22.0", "ydf<0.16",
                 "imageio>=2.31", "av"],
    },
    entry_points={"console_scripts": ["kpose=kpose.cli:main"]},
)
