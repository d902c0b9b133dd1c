"""What a recipe reaches in a fixed training budget, and where its errors are.

Trains a recipe (with overrides; its init, e.g. official weights) for EPOCHS x STEPS steps and reports,
on the validation split: OKS AP / AP50, median keypoint error relative to the box
size (sqrt(w*h)), PCK at 0.05 / 0.1 of the box size, and the left/right picture:
the share of people whose mirrored prediction (channels swapped) fits the ground
truth clearly better, split by whether the person faces the camera (left shoulder
on the image's right) or away. Comparing settings at one budget is how the quick
start's recipe was tuned (see README, Status).

    python benchmarks/training_budget.py --epochs 6 --steps 350 --set train.lr=0.012
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def error_report(pred: np.ndarray, instances) -> dict:
    """Relative errors, PCK and left/right swaps of predictions [N, K, 3] against instances."""
    sk = instances.skeleton
    gt = instances.keypoints
    vis = gt[..., 2] > 0
    size = np.sqrt(instances.bboxes[:, 2] * instances.bboxes[:, 3])[:, None]
    err = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1) / size
    mirrored = np.linalg.norm(pred[:, sk.flip_index(), :2] - gt[..., :2], axis=-1) / size
    swapped = (mirrored * vis).sum(1) < 0.7 * (err * vis).sum(1)
    out = {"median_error": float(np.median(err[vis])),
           "pck@0.05": float((err[vis] < 0.05).mean()), "pck@0.1": float((err[vis] < 0.1).mean()),
           "swapped": float(swapped.mean())}
    if {"left_shoulder", "right_shoulder"} <= set(sk.keypoints):
        ls, rs = gt[:, sk.index("left_shoulder")], gt[:, sk.index("right_shoulder")]
        both = (ls[:, 2] > 0) & (rs[:, 2] > 0)
        facing = both & (ls[:, 0] > rs[:, 0])
        away = both & (ls[:, 0] <= rs[:, 0])
        out.update({"facing_share": float(facing.mean()), "swapped_facing": float(swapped[facing].mean()),
                    "away_share": float(away.mean()), "swapped_away": float(swapped[away].mean())})
    return {k: round(v, 4) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="efficientpose_rt")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--steps", type=int, default=350, help="steps per epoch")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--out", default="benchmarks/results/training_budget.jsonl", help="appended, one line a run")
    a = ap.parse_args()

    import kpose
    from kpose.data.sources import load_instances
    from kpose.recipe import parse_override

    overrides = dict(parse_override(s) for s in a.set)
    overrides.setdefault("train.steps_per_epoch", a.steps)
    overrides.setdefault("train.eval_every", a.epochs)  # evaluate once, at the end
    t0 = time.time()
    run = kpose.train(a.recipe, epochs=a.epochs, overrides=overrides, runs_dir=a.runs_dir, progress=False)
    wall = time.time() - t0
    data = {"train": run.recipe["data"]["train"], "val": run.recipe["data"]["val"]}
    val = load_instances(data, "val", progress=False)
    pred = run.model.predict_instances(val, batch_size=64, flip_test=bool(run.recipe["eval"]["flip_test"]))
    result = {"recipe": a.recipe, "set": a.set, "epochs": a.epochs, "steps_per_epoch": a.steps,
              "wall_s": round(wall), "AP": round(run.metrics["AP"], 4), "AP50": round(run.metrics["AP50"], 4),
              **error_report(pred, val), "run": str(run.dir)}
    print(json.dumps(result, indent=2))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
