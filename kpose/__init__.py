"""kpose: human pose estimation that trains in one call and ships to phones and browsers.

    import kpose
    run = kpose.train(recipe="efficientpose_rt")
    model = kpose.load(run.dir)
    poses = model.predict("photo.jpg")

Heavy modules (TensorFlow) load on first use, so `import kpose` and `kpose --help` are fast.
"""
from kpose.version import __version__

_LAZY = {
    "train": ("kpose.training", "train"),
    "Run": ("kpose.training", "Run"),
    "load": ("kpose.deploy.runtime", "load"),
    "PoseModel": ("kpose.pose_model", "PoseModel"),
    "Pose": ("kpose.pose_model", "Pose"),
    "evaluate": ("kpose.evaluation", "evaluate"),
    "recipes": ("kpose.recipe", "recipes"),
    "load_recipe": ("kpose.recipe", "load_recipe"),
    "export": ("kpose.deploy.exporter", "export"),
    "Tracker": ("kpose.tracking", "Tracker"),
    "TrackerConfig": ("kpose.tracking", "TrackerConfig"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'kpose' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
