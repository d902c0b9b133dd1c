"""How far post-training int8 moves the official EfficientPose keypoints on real person crops.

The int8 goal of the model-zoo issue has two accuracy parts: PCKh on the MPII samples
(benchmarks/tflite_latency.py reports it) and "within 1 px median keypoint distance of float
on the coco_mini person crops". Here each official variant (loaded into kpose's own model) is
exported to int8 TFLite, with full-resolution heatmaps and with stride-8 maps ("det",
`heatmaps="detection"`; also at fp32, to separate the stride-8 decoding from int8), calibrated
on coco_mini train2017 crops, and run on N seeded person
crops of coco_mini val2017; keypoints are decoded by each file's own codec (DARK) and compared
with the float Keras model's at the model's input resolution, where the float keypoint
scores at least 0.2.

    python benchmarks/int8_crop_agreement.py [--variants RT_LITE,I_LITE,II_LITE,RT,I,II] [--crops 48]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from kpose.deploy.exporter import export
from kpose.deploy.runtime import load_exported
from kpose.deploy.samples import crops_from
from kpose.model_io import load_model

SHARED = Path(os.environ.get("KPOSE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
COCO = SHARED / "data" / "coco_mini"
TRAIN = f"coco:{COCO / 'annotations' / 'person_keypoints_train2017.json'}:{COCO / 'train2017'}"
VAL = f"coco:{COCO / 'annotations' / 'person_keypoints_val2017.json'}:{COCO / 'val2017'}"
MIN_SCORE = 0.2  # float keypoints compared (the others are not found by the float model either)


def distances(float_kp: np.ndarray, int8_kp: np.ndarray) -> np.ndarray:
    """Pixel distances [M] between matching keypoints [N, K, 3] where the float score >= MIN_SCORE."""
    found = float_kp[..., 2] >= MIN_SCORE
    return np.linalg.norm(int8_kp[..., :2] - float_kp[..., :2], axis=-1)[found]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="RT_LITE,I_LITE,II_LITE,RT,I,II")
    ap.add_argument("--crops", type=int, default=48, help="coco_mini val2017 person crops (seeded)")
    ap.add_argument("--out", default="benchmarks/results/int8_crop_agreement.json")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kpose-int8-crops-"))
    rows = []
    for variant in a.variants.split(","):
        h5 = SHARED / "peers" / "efficientpose" / f"EfficientPose{variant}.h5"
        model = load_model(h5 if h5.is_file() else h5.with_suffix(".tflite"))  # II, II_LITE: .tflite weights
        crops = crops_from(VAL, model.input_size, a.crops, split="val", padding=model.crop_padding)
        reference = model.codec.batch_decode(model.heatmaps(crops))
        for heatmaps, precision in (("full", "int8"), ("detection", "fp32"), ("detection", "int8")):
            path = export(model, "tflite", precision, tmp / f"{variant}_{heatmaps}_{precision}.tflite",
                          calibration=TRAIN if precision == "int8" else None, heatmaps=heatmaps)
            exported = load_exported(path)
            d = distances(reference, exported.codec.batch_decode(exported.heatmaps(crops)))
            rows.append({"variant": variant, "heatmaps": heatmaps, "precision": precision, "crops": len(crops), "keypoints": int(d.size),
                         "median_px": float(np.median(d)), "p90_px": float(np.percentile(d, 90))})
            print(json.dumps(rows[-1]), flush=True)
    print("| variant | export | keypoints compared | median px | p90 px |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['heatmaps']} {r['precision']} | {r['keypoints']} | {r['median_px']:.2f} "
              f"| {r['p90_px']:.2f} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
