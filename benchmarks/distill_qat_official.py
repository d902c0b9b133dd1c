"""Quantise the official EfficientPose weights with QAT by self-distillation, then
compare float / PTQ int8 / QAT int8 on the real MPII samples and coco_mini crops.

The official releases come without their training data, so the QAT copy learns
to reproduce the float model's own heatmaps on person crops of coco_mini train
(`kpose.training.distill.distill_qat`; no labels used). Writes the QAT .tflite for
benchmarks/tflite_latency.py --qat.

    python benchmarks/distill_qat_official.py [--variant RT] [--steps 800]

Every official variant: RT, RT_LITE, I, I_LITE from their .h5, II, II_LITE from the weights
in their .tflite files. Keypoint distances are measured on the crops benchmarks/int8_crop_agreement.py
uses (same seed and crop padding), so its post-training rows and these QAT rows compare.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from int8_crop_agreement import distances


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("KPOSE_SHARED",
                                                      Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--variant", default="RT", choices=["RT", "RT_LITE", "I", "I_LITE", "II", "II_LITE"])
    ap.add_argument("--steps", type=int, default=800, help="800 at 3e-4: PCKh 0.909 in 23 min (300 at 1e-4: 0.682)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--feature-weight", type=float, help="distill_qat's feature_weight (default: its own; 0: "
                    "output maps only, as before session 26)")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()

    import kpose
    from kpose.deploy.exporter import compare, export
    from kpose.deploy.graph import export_network
    from kpose.deploy.samples import crops_from
    from kpose.training.distill import distill_qat

    shared = Path(a.shared)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    coco = shared / "data" / "coco_mini"
    train = f"coco:{coco}/annotations/person_keypoints_train2017.json:{coco}/train2017"
    val = f"coco:{coco}/annotations/person_keypoints_val2017.json:{coco}/val2017"
    mpii = f"mpii:{shared / 'data/mpii_samples/test_mpii.json'}:{shared / 'data/mpii_samples'}"
    h5 = shared / f"peers/efficientpose/EfficientPose{a.variant}.h5"
    model = kpose.load(h5 if h5.is_file() else h5.with_suffix(".tflite"))  # II, II_LITE: .tflite weights

    t0 = time.time()
    given = {} if a.feature_weight is None else {"feature_weight": a.feature_weight}
    qat = distill_qat(model, train, steps=a.steps, batch_size=a.batch_size, lr=a.lr, **given)
    seconds = time.time() - t0
    qat.save(out / f"efficientpose_{a.variant.lower()}_qat_model")
    paths = {
        "PTQ int8": export(model, "tflite", "int8", out / f"efficientpose_{a.variant.lower()}_int8.tflite", calibration=train),
        "PTQ int8, detection-grid heatmaps": export(model, "tflite", "int8", out / f"efficientpose_{a.variant.lower()}_int8_det.tflite",
                                                    calibration=train, heatmaps="detection"),
        "QAT int8": export(qat, "tflite", "qat", out / f"efficientpose_{a.variant.lower()}_qat.tflite"),
        "QAT int8, detection-grid heatmaps": export(qat, "tflite", "qat", out / f"efficientpose_{a.variant.lower()}_qat_det.tflite",
                                                    heatmaps="detection"),
    }
    # Agreement with the float model on unseen real crops (coco_mini val), and PCKh on MPII.
    crops = crops_from(val, model.input_size, 48, split="val", padding=model.crop_padding)
    net = export_network(model)
    ref = np.concatenate([np.asarray(net(c[None], training=False)) for c in crops])
    rows = [{"model": "float (Keras)", "PCKh@0.5": kpose.evaluate(model, data=mpii, progress=False)["PCKh@0.5"]}]
    from kpose.deploy.runtime import load_exported
    for label, path in paths.items():
        exported = load_exported(path)
        if exported.codec.heatmap_size != model.codec.heatmap_size:  # compare decoded keypoints
            d = distances(model.codec.batch_decode(ref), exported.codec.batch_decode(exported.heatmaps(crops)))
            diff = {"keypoint_median_px": float(np.median(d)), "keypoint_p90_px": float(np.percentile(d, 90))}
        else:
            diff = compare(model, exported.heatmaps(crops), ref)
        rows.append({"model": label, "PCKh@0.5": kpose.evaluate(path, data=mpii, progress=False)["PCKh@0.5"],
                     "median_px": diff["keypoint_median_px"], "p90_px": diff["keypoint_p90_px"]})
    print(f"distill QAT: {a.steps} steps x {a.batch_size} crops in {seconds:.0f}s")
    print(f"| EfficientPose {a.variant} | PCKh@0.5 (MPII samples) | keypoint distance to float, median / p90 (48 coco_mini val crops, px at {model.input_size[0]}) |")
    print("|---|---|---|")
    for r in rows:
        dist = f"{r['median_px']:.2f} / {r['p90_px']:.2f}" if "median_px" in r else "-"
        print(f"| {r['model']} | {r['PCKh@0.5']:.3f} | {dist} |")
    (out / f"distill_qat_{a.variant.lower()}.json").write_text(json.dumps(
        {"steps": a.steps, "seconds": seconds, "qat": qat.config["qat"], "rows": rows, "paths": {k: str(v) for k, v in paths.items()}}, indent=2))


if __name__ == "__main__":
    main()
