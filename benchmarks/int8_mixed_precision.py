"""Where int8 hurts an official EfficientPose variant, and what keeping a few layers in float buys.

Each variant's stride-8 ("det") export is quantised to int8 with the N layers that int8
damages most on the calibration crops kept in float32 (`kpose export --precision int8
--float-layers N`; layers ranked by kpose.deploy.tflite.sensitive_layers), and, with
--parts, with whole parts of the network in float (a regular expression on the layers'
names). Each file is scored as benchmarks/int8_crop_agreement.py scores post-training
int8: keypoint distance to the float Keras model on the same seeded coco_mini val2017
crops, plus PCKh@0.5 on the MPII samples. Time the files it writes with
`benchmarks/tflite_latency.py --variants V --qat V=FILE`.

    python benchmarks/int8_mixed_precision.py --variant II_LITE --float-layers 0,3,10
    python benchmarks/int8_mixed_precision.py --variant RT --float-layers 0 \\
        --parts "backbone=detection/(block|stem)" --parts pass1=pass1_ --parts se=_se_
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
from int8_crop_agreement import SHARED, TRAIN, VAL, distances

import kpose
from kpose.deploy import graph, metadata, tflite
from kpose.deploy.exporter import export
from kpose.deploy.runtime import load_exported
from kpose.deploy.samples import crops_from, model_inputs

MPII = f"mpii:{SHARED / 'data/mpii_samples/test_mpii.json'}:{SHARED / 'data/mpii_samples'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="II_LITE", choices=["RT", "RT_LITE", "I", "I_LITE", "II", "II_LITE"])
    ap.add_argument("--float-layers", default="0,3,10", help="comma-separated counts of layers kept in float")
    ap.add_argument("--parts", action="append", default=[], metavar="LABEL=REGEX",
                    help="also keep every layer whose output tensor name matches REGEX in float (repeatable)")
    ap.add_argument("--crops", type=int, default=48, help="coco_mini val2017 person crops (seeded)")
    ap.add_argument("--out", default="benchmarks/results/int8_mixed_precision")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    h5 = SHARED / "peers" / "efficientpose" / f"EfficientPose{a.variant}.h5"
    model = kpose.load(h5 if h5.is_file() else h5.with_suffix(".tflite"))  # II, II_LITE: .tflite weights
    crops = crops_from(VAL, model.input_size, a.crops, split="val", padding=model.crop_padding)
    reference = model.codec.batch_decode(model.heatmaps(crops))

    files = []
    for n in (int(v) for v in a.float_layers.split(",")):
        t0 = time.time()
        files.append((f"{n} layers", export(model, "tflite", "int8", out, calibration=TRAIN, heatmaps="detection",
                                            float_layers=n), time.time() - t0))
    if a.parts:
        det = graph.with_heatmaps(model, "detection")
        calib = model_inputs(det, TRAIN, 64, split="train")
        serve = graph.export_function(det, graph.export_network(det, "int8", "tflite", calib))
        ranked = tflite.sensitive_layers(serve, calib)
        for label, regex in (p.split("=", 1) for p in a.parts):
            t0 = time.time()
            names = [n for n in ranked if re.search(regex, n)]
            data = tflite.convert(serve, "int8", calib, float_layers=names)
            info = dict(metadata.model_metadata(det, "int8"), float_layers=names)
            path = out / f"{det.config.get('recipe') or a.variant}_det_int8_{label}.tflite"
            path.write_bytes(metadata.embed_tflite_metadata(data, info))
            files.append((f"{label} ({len(names)} layers)", path, time.time() - t0))

    rows = []
    for label, path, seconds in files:
        exported = load_exported(path)
        d = distances(reference, exported.codec.batch_decode(exported.heatmaps(crops)))
        float_ops = tflite.float_compute_ops(path)
        rows.append({"variant": a.variant, "in float": label, "path": str(path), "float_ops": float_ops,
                     "PCKh@0.5": kpose.evaluate(path, data=MPII, progress=False)["PCKh@0.5"],
                     "median_px": float(np.median(d)), "p90_px": float(np.percentile(d, 90)),
                     "export_s": round(seconds, 1),
                     "float_layers": metadata.read_tflite_metadata(path).get("float_layers", [])})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "float_layers"}), flush=True)
    print(f"| {a.variant} det int8, kept in float | PCKh@0.5 | px to float, median / p90 | float ops |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['in float']} | {r['PCKh@0.5']:.3f} | {r['median_px']:.2f} / {r['p90_px']:.2f} "
              f"| {len(r['float_ops'])} |")
    (out / f"{a.variant.lower()}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
