"""Post-training int8 of the official EfficientPose variants with and without rescaled
concatenations (kpose.models.concat_scales), side by side in one run.

An int8 CONCATENATION has one scale for its inputs and output; EfficientPose concatenates
each detection pass's output with the backbone's features, whose range is 10-30x wider, so
without rescaling the first passes compute on a grid of a few levels. Each variant's
stride-8 ("det") export is quantised both ways from the same 64 calibration crops of
coco_mini train2017 and scored as benchmarks/int8_crop_agreement.py scores post-training
int8: keypoint distance to the float Keras model on the seeded coco_mini val2017 crops,
PCKh@0.5 on the MPII samples (66 scored keypoints: one is 0.015), plus the coarsest
concatenation scale in each file.

    python benchmarks/int8_concat_scales.py [--variants RT_LITE,I_LITE,II_LITE,RT,I,II]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from int8_crop_agreement import SHARED, TRAIN, VAL, distances

import kpose
from kpose.deploy import graph, metadata, tflite
from kpose.deploy.runtime import load_exported
from kpose.deploy.samples import crops_from, model_inputs
from kpose.models.quantize import integer_network

MPII = f"mpii:{SHARED / 'data/mpii_samples/test_mpii.json'}:{SHARED / 'data/mpii_samples'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="RT_LITE,I_LITE,II_LITE,RT,I,II")
    ap.add_argument("--crops", type=int, default=48, help="coco_mini val2017 person crops (seeded)")
    ap.add_argument("--out", default="benchmarks/results/int8_concat_scales")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for variant in a.variants.split(","):
        h5 = SHARED / "peers" / "efficientpose" / f"EfficientPose{variant}.h5"
        model = kpose.load(h5 if h5.is_file() else h5.with_suffix(".tflite"))  # II, II_LITE: .tflite weights
        crops = crops_from(VAL, model.input_size, a.crops, split="val", padding=model.crop_padding)
        reference = model.codec.batch_decode(model.heatmaps(crops))
        det = graph.with_heatmaps(model, "detection")
        calib = model_inputs(det, TRAIN, 64, split="train")
        nets = {"one scale per concatenation (before)": integer_network(det.keras_model),
                "rescaled concatenations (kpose export)": graph.export_network(det, "int8", "tflite", calib)}
        for label, net in nets.items():
            t0 = time.time()
            data = tflite.convert(graph.export_function(det, net), "int8", calib)
            path = out / f"{variant.lower()}_det_int8_{'rescaled' if 'rescaled' in label else 'plain'}.tflite"
            path.write_bytes(metadata.embed_tflite_metadata(data, metadata.model_metadata(det, "int8")))
            exported = load_exported(path)
            d = distances(reference, exported.codec.batch_decode(exported.heatmaps(crops)))
            rows.append({"variant": variant, "export": label, "PCKh@0.5": kpose.evaluate(path, data=MPII, progress=False)["PCKh@0.5"],
                         "median_px": float(np.median(d)), "p90_px": float(np.percentile(d, 90)),
                         "coarsest_concat_scale": max(tflite.concatenation_scales(path)),
                         "convert_s": round(time.time() - t0, 1), "path": str(path)})
            print(json.dumps(rows[-1]), flush=True)
        rows.append({"variant": variant, "export": "float (Keras)",
                     "PCKh@0.5": kpose.evaluate(model, data=MPII, progress=False)["PCKh@0.5"]})
    print("| variant | det int8 export | PCKh@0.5 | px to float, median / p90 | coarsest concat scale |\n|---|---|---|---|---|")
    for r in rows:
        px = f"{r['median_px']:.2f} / {r['p90_px']:.2f}" if "median_px" in r else "-"
        scale = f"{r['coarsest_concat_scale']:.3f}" if "coarsest_concat_scale" in r else "-"
        print(f"| {r['variant']} | {r['export']} | {r['PCKh@0.5']:.3f} | {px} | {scale} |")
    (out / "int8_concat_scales.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
