"""Training recipes: YAML data shipped in kpose._recipes (the repository's recipes/ folder), resolved with overrides.

A recipe is plain data; `load_recipe` merges the defaults below, the YAML file
and caller overrides (dotted keys like "train.epochs") into one dict that is
written to every run folder, so a run can be reproduced from it alone.
"""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

# Every key a recipe may set, with its default. An override or recipe key not
# in this tree is an error (a typo must not silently train something else).
DEFAULTS: dict[str, Any] = {
    "name": None,
    # backbone_weights: pretrained weights for a family's backbone (Family.backbone_weights):
    # imagenet (downloaded), the path of a .h5 weights file, or null (random initialisation).
    "model": {"family": "efficientpose", "variant": "rt", "input_size": [224, 224], "backbone_weights": None},
    "skeleton": "coco17",
    # max_val: validation samples used (None: all); max_people: bottom-up people per image kept.
    "data": {"train": "synthetic", "val": "synthetic", "max_val": None, "max_people": 30},
    # limb_sigma: the limb heatmaps' Gaussian sigma across the limb (input pixels; codec limb_heatmap).
    "codec": {"type": "heatmap", "sigma": 2.0, "paf_width": 1.0, "limb_sigma": 4.0},
    # type: l2, or focal_l2 (SimplePose's: |1 - s_t|^gamma weights the squared error, s_t the
    # prediction where the target >= focal_threshold, 1 - prediction elsewhere).
    "loss": {"pass_weights": [1.0, 1.0, 1.0, 1.0], "scale": 1000.0, "foreground_weight": 0.0,
             "type": "l2", "gamma": 2.0, "focal_threshold": 0.01},
    "augment": {
        "flip": 0.5, "rotation": 30.0, "scale": [0.75, 1.25], "shift": 0.1,
        "rotation_prob": 0.6, "color": 0.25, "box_padding": 1.25,
    },
    "train": {
        "epochs": 10, "batch_size": 16, "optimizer": "adam", "lr": 1e-3,
        "weight_decay": 0.0, "warmup_epochs": 0.5,
        "steps_per_epoch": None, "seed": 0, "eval_every": 1, "shuffle_buffer": 2048,
        "early_input_size": None, "early_epochs": 0,
        # steps between backups a killed run resumes from (kpose train --resume); 0: every epoch
        "backup_every": 0,
        # float16 compute with float32 weights, outputs and loss, and loss scaling (Keras
        # "mixed_float16"): for GPUs with tensor cores; it runs on a CPU, slowly.
        "mixed_precision": False,
        # tf.distribute (kpose/training/distribute.py): auto = TF_CONFIG's workers, a TPU, several
        # GPUs, else one device; or default / mirrored / multi_worker / tpu. batch_size is per
        # replica: the global batch is batch_size x replicas.
        "strategy": "auto",
        # learning rate with several replicas: "none" (lr as given) or "linear" (lr x replicas)
        "lr_scaling": "none",
        # with several replicas, BatchNorms normalise by the global batch's statistics, as one
        # process training the whole batch does (not by each replica's share)
        "sync_batch_norm": True,
    },
    # scales: bottom-up multi-scale validation (factors of the input size, e.g. [1.0, 1.5]).
    "eval": {"flip_test": False, "batch_size": 32, "scales": None},
    # Quantisation-aware fine-tuning after the float stage (kpose.train(..., qat=True)).
    # freeze_batch_norm: batch norms use their moving statistics while QAT fine-tunes, as the
    # deployed network does (measured in docs/results.md, "QAT with frozen batch norms").
    "qat": {"enabled": False, "epochs": 2, "lr": 1e-4, "freeze_batch_norm": True},
    "init": None,
}


# Keys whose value is one of a fixed set (the code that reads each one lists the same names:
# loss.type -> kpose.training.trainer.LOSSES; tests check they agree).
CHOICES: dict[str, tuple[str, ...]] = {
    "loss.type": ("l2", "focal_l2"),
}


class RecipeError(ValueError):
    """A recipe name, file or override that does not exist."""


def recipes() -> list[str]:
    """Names of the packaged recipes."""
    return sorted(p.name[:-5] for p in resources.files("kpose._recipes").iterdir()
                  if p.name.endswith(".yaml"))


def _read_yaml(recipe: str) -> tuple[dict, str]:
    path = Path(recipe)
    if recipe.endswith((".yaml", ".yml")) and path.exists():
        return yaml.safe_load(path.read_text()) or {}, str(path)
    names = recipes()
    if recipe not in names:
        raise RecipeError(f"unknown recipe {recipe!r}; packaged recipes: {', '.join(names)} "
                          f"(or pass the path of a .yaml file)")
    res = resources.files("kpose._recipes") / f"{recipe}.yaml"
    return yaml.safe_load(res.read_text()) or {}, f"kpose._recipes/{recipe}.yaml"


def _merge(base: dict, new: dict, origin: str, prefix: str = "") -> None:
    for key, value in new.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            known = ", ".join(f"{prefix}{k}" for k in base)
            raise RecipeError(f"{origin}: unknown recipe key {dotted!r}; known keys here: {known}")
        if isinstance(base[key], dict) and isinstance(value, dict):
            _merge(base[key], value, origin, dotted + ".")
        elif isinstance(base[key], dict):
            raise RecipeError(f"{origin}: {dotted!r} is a section; set its keys, e.g. {dotted}.<key>")
        else:
            base[key] = value


def _check_choices(given: dict, origin: str) -> None:
    """Refuse a value outside CHOICES where `given` (a YAML file's or the overrides' nested
    keys) sets one, naming where it came from."""
    for dotted, known in CHOICES.items():
        node = given
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and node not in known:
            raise RecipeError(f"{origin}: {dotted}={node!r} is not one kpose knows; set {dotted} to one of "
                              f"{', '.join(known)}")


def _nest(overrides: dict[str, Any]) -> dict:
    nested: dict = {}
    for dotted, value in overrides.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return nested


def load_recipe(recipe: str, overrides: dict[str, Any] | None = None) -> dict:
    """The resolved recipe: defaults <- YAML <- overrides (dotted keys allowed)."""
    data, origin = _read_yaml(recipe)
    resolved = copy.deepcopy(DEFAULTS)
    _merge(resolved, data, origin)
    _check_choices(data, origin)
    if overrides:
        nested = _nest(overrides)
        _merge(resolved, nested, "override")
        _check_choices(nested, "override")
    resolved["name"] = resolved["name"] or Path(recipe).stem
    return resolved


def parse_override(text: str) -> tuple[str, Any]:
    """'train.epochs=3' -> ('train.epochs', 3); values are parsed as YAML."""
    if "=" not in text:
        raise RecipeError(f"override {text!r} must look like key=value, e.g. train.epochs=3")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)
