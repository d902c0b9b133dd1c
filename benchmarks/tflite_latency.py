"""TFLite latency on the LiteRT interpreter (XNNPACK), side by side with the peers.

Exports every official EfficientPose variant (RT, RT_LITE, I, I_LITE from their .h5, II,
II_LITE from their .tflite weights, loaded into kpose's own models) at fp32 / int8 (RT and
RT_LITE also fp16), each also with `heatmaps="detection"` ("det": the stride-8 maps, no
upscaling layers) at fp32 / int8; times them in one interleaved run
with the official EfficientPose TFLite files and MoveNet Lightning int8 from ../shared/peers,
at 1 and 2 threads, and reports medians and ratios to the official EfficientPose RT fp32
(and each kpose export's ratio to its own variant's official fp32 file).
It also reports PCKh@0.5 of each EfficientPose model on the MPII samples, so a
speed-up is read next to the accuracy it costs.

With --run (a run trained with --qat: model_float/ and model/), that run's float model at
fp32 and post-training int8 and its QAT model are timed in the same run at the run's input
size, with their speed-up over the run's own fp32 export.

    python benchmarks/tflite_latency.py [--runs 50] [--qat [VARIANT=]FILE.tflite ...] [--run runs/<qat run>]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _time(interp, feed, runs: int) -> list[float]:
    inp = interp.get_input_details()[0]
    times = []
    for _ in range(runs):
        interp.set_tensor(inp["index"], feed)
        t0 = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("KPOSE_SHARED",
                                                      Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--runs", type=int, default=50, help="timed runs per model and thread count")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (runs are split over them)")
    ap.add_argument("--qat", action="append", default=[], metavar="[VARIANT=]FILE",
                    help="also time this exported .tflite (QAT, or mixed precision from int8_mixed_precision.py), with its PCKh; VARIANT= (an official variant, "
                         "e.g. RT_LITE=out/efficientpose_rt_lite_qat_det.tflite from distill_qat_official.py) "
                         "adds its ratio to that variant's official fp32 file (repeatable)")
    ap.add_argument("--run", help="a run trained with --qat: also time its fp32 / int8 / qat exports")
    ap.add_argument("--variants", default="RT,RT_LITE,I,I_LITE,II,II_LITE",
                    help="official EfficientPose variants to export and time (comma-separated)")
    ap.add_argument("--out", default="benchmarks/results/tflite_latency.json")
    a = ap.parse_args()

    import kpose
    from ai_edge_litert.interpreter import Interpreter
    from kpose.deploy.exporter import export

    shared = Path(a.shared)
    peers = shared / "peers"
    mpii = f"mpii:{shared / 'data/mpii_samples/test_mpii.json'}:{shared / 'data/mpii_samples'}"
    coco = shared / "data" / "coco_mini"
    calib = f"coco:{coco}/annotations/person_keypoints_train2017.json:{coco}/train2017"
    tmp = Path(tempfile.mkdtemp(prefix="kpose-latency-"))

    variants = a.variants.split(",")
    models: dict[str, dict] = {"MoveNet Lightning int8": {
        "path": peers / "movenet/lite-model_movenet_singlepose_lightning_tflite_int8_4.tflite"}}
    for variant in variants:
        models[f"official {variant} fp32"] = {"path": peers / f"efficientpose/EfficientPose{variant}.tflite"}
        official = models[f"official {variant} fp32"]
        # the official file, run by kpose's TFLite runtime: its own PCKh
        official["pckh"] = kpose.evaluate(official["path"], data=mpii, progress=False)["PCKh@0.5"]
        h5 = peers / f"efficientpose/EfficientPose{variant}.h5"
        pm = kpose.load(h5 if h5.is_file() else official["path"])   # II, II_LITE: weights read from the .tflite
        exports = [("full", "fp32")] + ([("full", "fp16")] if variant in ("RT", "RT_LITE") else []) + [
            ("full", "int8"), ("detection", "fp32"), ("detection", "int8")]
        for heatmaps, prec in exports:
            tag = "" if heatmaps == "full" else " det"
            path = export(pm, "tflite", prec, tmp / f"{variant}{tag.strip()}_{prec}.tflite",
                          calibration=calib if prec == "int8" else None, heatmaps=heatmaps)
            pckh = kpose.evaluate(path, data=mpii, progress=False)["PCKh@0.5"]
            models[f"kpose {variant}{tag} {prec}"] = {"path": path, "pckh": pckh, "official": f"official {variant} fp32"}
    for spec in a.qat:
        variant, _, path = spec.rpartition("=")
        entry = {"path": Path(path), "pckh": kpose.evaluate(path, data=mpii, progress=False)["PCKh@0.5"]}
        if variant:
            if f"official {variant} fp32" not in models:
                raise SystemExit(f"--qat {spec}: variant {variant} is not among --variants {a.variants}")
            entry["official"] = f"official {variant} fp32"
        models[f"kpose {Path(path).stem}"] = entry
    run_models = []
    if a.run:
        run = Path(a.run)
        float_model, qat_model = kpose.load(run / "model_float"), kpose.load(run / "model")
        size = "x".join(str(v) for v in float_model.input_size)
        for prec, pm in (("fp32", float_model), ("int8", float_model), ("qat", qat_model)):
            name = f"run {size} {prec}"
            models[name] = {"path": export(pm, "tflite", prec, tmp / f"run_{prec}.tflite")}
            run_models.append(name)

    per_round = max(a.runs // a.rounds, 1)
    results = {name: {1: [], 2: []} for name in models}
    interps = {}
    for name, m in models.items():
        for threads in (1, 2):
            it = Interpreter(model_path=str(m["path"]), num_threads=threads)
            it.allocate_tensors()
            d = it.get_input_details()[0]
            rng = np.random.default_rng(0)
            feed = (rng.integers(0, 256, d["shape"]).astype(d["dtype"]) if d["dtype"] == np.uint8
                    else rng.uniform(0, 255 if name.startswith("kpose") else 1, d["shape"]).astype(d["dtype"]))
            _time(it, feed, 3)  # warm-up
            interps[name, threads] = (it, feed)
    for _ in range(a.rounds):  # interleaved, so drift in machine load hits every model alike
        for (name, threads), (it, feed) in interps.items():
            results[name][threads] += _time(it, feed, per_round)

    reference = f"official {'RT' if 'RT' in variants else variants[0]} fp32"
    base = {t: float(np.median(results[reference][t])) for t in (1, 2)}
    rows = []
    print(f"LiteRT XNNPACK, median of {per_round * a.rounds} runs, interleaved; ratio = {reference} / model")
    print(f"{'model':28s} {'1 thread':>10s} {'ratio':>6s} {'2 threads':>10s} {'ratio':>6s} {'PCKh@0.5':>9s} {'MB':>6s}")
    for name, m in models.items():
        med = {t: float(np.median(results[name][t])) for t in (1, 2)}
        row = {"model": name, "ms_1": med[1], "ms_2": med[2], "speedup_1": base[1] / med[1],
               "speedup_2": base[2] / med[2], "pckh": m.get("pckh"), "mb": m["path"].stat().st_size / 1e6}
        if "official" in m:   # against its own variant's official fp32 file
            own = {t: float(np.median(results[m["official"]][t])) for t in (1, 2)}
            row.update({"vs_official_1": own[1] / med[1], "vs_official_2": own[2] / med[2]})
        rows.append(row)
        pckh = f"{row['pckh']:.3f}" if row["pckh"] is not None else "-"
        own = (f" {row['vs_official_1']:5.2f}x {row['vs_official_2']:5.2f}x vs its official fp32"
               if "vs_official_1" in row else "")
        print(f"{name:28s} {med[1]:8.2f}ms {row['speedup_1']:5.2f}x {med[2]:8.2f}ms {row['speedup_2']:5.2f}x "
              f"{pckh:>9s} {row['mb']:6.2f}{own}")
    if run_models:
        own = {t: float(np.median(results[run_models[0]][t])) for t in (1, 2)}
        print(f"speed-up over {run_models[0]}:")
        for name in run_models:
            med = {t: float(np.median(results[name][t])) for t in (1, 2)}
            print(f"{name:28s} {own[1] / med[1]:5.2f}x (1 thread) {own[2] / med[2]:5.2f}x (2 threads)")
            next(r for r in rows if r["model"] == name).update(
                {"speedup_own_fp32_1": own[1] / med[1], "speedup_own_fp32_2": own[2] / med[2]})
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cores": os.cpu_count(), "runs": per_round * a.rounds, "rows": rows}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
