"""Accuracy of every precision on the same validation data: float Keras vs TFLite
fp16 vs post-training int8 vs QAT int8.

A run trained with `kpose train RECIPE --qat` holds the float model (model_float/)
and the QAT model (model/); both are exported here and evaluated through the same
crop/decode/pycocotools path (`kpose.evaluate` runs exported files in LiteRT).
With --official, the official EfficientPose RT / RT_LITE weights are also compared
on the real MPII samples (float, fp16, PTQ int8; no QAT: fine-tuning them needs
MPII-labelled training data that is not available here).

    python benchmarks/quantization_accuracy.py --run runs/<run> [--official]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path


def _table(title: str, rows: list[dict], key: str) -> str:
    lines = [f"### {title}", "", f"| model | {key} | vs float |", "|---|---|---|"]
    base = rows[0][key]
    for r in rows:
        lines.append(f"| {r['model']} | {r[key]:.4f} | {100 * (r[key] - base):+.2f} pt |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="a run folder trained with --qat (model_float/ and model/)")
    ap.add_argument("--official", action="store_true", help="also the official weights on MPII samples")
    ap.add_argument("--shared", default=os.environ.get("KPOSE_SHARED",
                                                      Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--flip-test", action="store_true",
                    help="average with the mirrored crop, as the quick start's evaluation does (eval.flip_test)")
    ap.add_argument("--out", default="benchmarks/results/quantization_accuracy.md")
    a = ap.parse_args()

    import kpose
    from kpose.deploy.exporter import export

    tmp = Path(tempfile.mkdtemp(prefix="kpose-qacc-"))
    report = []
    if a.run:
        run = Path(a.run)
        float_model = kpose.load(run / "model_float")
        qat_model = kpose.load(run / "model")
        data = float_model.config["data"]["val"]
        ev = dict(data=data, progress=False, flip_test=a.flip_test)
        rows = [{"model": "float (Keras)", **kpose.evaluate(float_model, **ev)}]
        for prec in ("fp16", "int8"):
            path = export(float_model, "tflite", prec, tmp / f"run_{prec}.tflite")
            rows.append({"model": f"TFLite {prec}" + (" (PTQ, calibrated on 64 training crops)" if prec == "int8" else ""),
                         **kpose.evaluate(path, **ev)})
        path = export(qat_model, "tflite", "qat", tmp / "run_qat.tflite")
        rows.append({"model": "TFLite QAT int8", **kpose.evaluate(path, **ev)})
        rows.append({"model": "QAT model (Keras, fake-quant)", **kpose.evaluate(qat_model, **ev)})
        flip = ", flip test" if a.flip_test else ""
        # Bottom-up models are scored in the data's skeleton (OKS AP) whatever their own has.
        key = "AP" if "AP" in rows[0] else "PCKh@0.5"
        for r in rows:
            print(json.dumps({k: v for k, v in r.items() if k in ("model", key, "AP50", "people_found")}), flush=True)
        report.append(_table(f"{run.name}: {data} validation split{flip}", rows, key))
    if a.official:
        shared = Path(a.shared)
        mpii = f"mpii:{shared / 'data/mpii_samples/test_mpii.json'}:{shared / 'data/mpii_samples'}"
        coco = shared / "data" / "coco_mini"
        calib = f"coco:{coco}/annotations/person_keypoints_train2017.json:{coco}/train2017"
        for variant in ("RT", "RT_LITE"):
            pm = kpose.load(shared / f"peers/efficientpose/EfficientPose{variant}.h5")
            rows = [{"model": "float (Keras)", **kpose.evaluate(pm, data=mpii, progress=False)}]
            for prec in ("fp16", "int8"):
                path = export(pm, "tflite", prec, tmp / f"{variant}_{prec}.tflite",
                              calibration=calib if prec == "int8" else None)
                rows.append({"model": f"TFLite {prec}" + (" (PTQ, calibrated on coco_mini crops)" if prec == "int8" else ""),
                             **kpose.evaluate(path, data=mpii, progress=False)})
            report.append(_table(f"official EfficientPose {variant}: MPII samples (5 people)", rows, "PCKh@0.5"))
    text = "\n".join(report)
    print(text)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written {out}")


if __name__ == "__main__":
    main()
