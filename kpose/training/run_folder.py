"""A run folder on disk: where it goes, what a backup in it holds, when it may be resumed."""
from __future__ import annotations

import time
from pathlib import Path

import yaml

from kpose._tf import tf

BACKUP_DIR = "backup"


def new_run_dir(root: str | Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d = Path(root) / f"{name}-{stamp}"
    i = 1
    while d.exists():
        i += 1
        d = Path(root) / f"{name}-{stamp}-{i}"
    d.mkdir(parents=True)
    return d


def backup_step(backup: Path) -> int:
    """Optimizer steps done at the newest checkpoint in a BackupAndRestore folder (0: none)."""
    found = sorted(backup.rglob("checkpoint"))
    latest = tf.train.latest_checkpoint(str(found[0].parent)) if found else None
    if latest is None:
        return 0
    reader = tf.train.load_checkpoint(latest)
    keys = [k for k in reader.get_variable_to_shape_map() if k.endswith("optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE")
            or k.endswith("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")]
    if not keys:
        raise ValueError(f"{latest}: no optimizer step counter in this backup; it was not written by kpose "
                         f"train. Remove {backup} to start over")
    return int(reader.get_tensor(min(keys, key=len)))


def check_same_recipe(run_dir: Path, cfg: dict) -> None:
    """A named run resumes only with the recipe it was started with."""
    saved = yaml.safe_load((run_dir / "recipe.yaml").read_text())

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(saved), flat(yaml.safe_load(yaml.safe_dump(cfg)))
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if differ:
        raise ValueError(f"{run_dir} holds a backup of a run with another recipe ({', '.join(differ)} differ: "
                         f"{', '.join(f'{k}={a.get(k)!r} there, {b.get(k)!r} now' for k in differ[:3])}); "
                         f"resume it with the same settings, or give another --name")


def resumed_run(run_dir: Path) -> tuple[Path, dict]:
    """(run folder, its recipe) for train(resume=...), after checking there is a backup."""
    if not (run_dir / "recipe.yaml").is_file():
        raise ValueError(f"{run_dir}: no recipe.yaml, so not a kpose run folder to resume")
    if not (run_dir / BACKUP_DIR).is_dir():
        raise ValueError(f"{run_dir}: no {BACKUP_DIR}/ to resume from (the run finished, or was stopped "
                         f"before its first backup); start a new run")
    return run_dir, yaml.safe_load((run_dir / "recipe.yaml").read_text())
