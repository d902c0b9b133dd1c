"""Overfitting check on real data: crops, flips, targets, decoding and the inverse
transform must agree, or a model cannot fit its own training crops.

Trains EfficientPose RT from scratch on the person crops of ../shared/data/coco_mini
train2017 (light augmentation) and evaluates on the same crops with pycocotools.
Target: COCO AP >= 0.9. Not a CI test: it takes a while on a CPU.

    python benchmarks/overfit_coco_mini.py [--epochs 80] [--size 128]
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import kpose


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("KPOSE_SHARED",
                                                      Path(__file__).resolve().parents[2] / "shared"))
    # 80 measured: AP 0.913 in 16.7 min on 2 cores (50 epochs: 0.727, the schedule ends too soon)
    ap.add_argument("--epochs", type=int, default=80, help="epochs of 55 steps (5 passes over the 86 crops)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.012,
                    help="peak learning rate (default: the from-scratch rate 2.4e-2 scaled to batch 8)")
    ap.add_argument("--init", default=None,
                    help="start from these weights (e.g. 'official'); default: random, the harder check")
    ap.add_argument("--runs-dir", default="runs")
    a = ap.parse_args()
    root = Path(a.shared) / "data" / "coco_mini"
    spec = f"coco:{root / 'annotations/person_keypoints_train2017.json'}:{root / 'train2017'}"
    run = kpose.train(
        "efficientpose_rt", data={"train": spec, "val": spec}, epochs=a.epochs, batch_size=a.batch_size,
        overrides={"model.input_size": [a.size, a.size], "train.lr": a.lr, "init": a.init, "train.eval_every": 10,
                   "train.steps_per_epoch": 55,
                   # only what keeps the same crops recognisable: flips exercise the channel swap
                   "augment.rotation": 0.0, "augment.scale": [0.95, 1.05], "augment.shift": 0.02,
                   "augment.color": 0.0, "augment.flip": 0.5,
                   "augment.box_padding": 1.25,  # as measured (README); the recipe's 1.1 is tuned on synthetic people
                   # all epochs at one size. (Its earlier figure was measured with a soft-argmax
                   # coordinate loss, since removed from kpose: it cost AP from the official weights.)
                   "train.early_input_size": None},
        runs_dir=a.runs_dir, progress=False)
    print(json.dumps({"AP": run.metrics["AP"], "AP50": run.metrics["AP50"],
                      "train_seconds": run.metrics["train_seconds"], "run": str(run.dir)}, indent=2))
    print("PASS" if run.metrics["AP"] >= 0.9 else "FAIL", "(target AP >= 0.9)")


if __name__ == "__main__":
    main()
