"""Where post-training int8 error builds up in an official EfficientPose variant, op by op.

`kpose.deploy.tflite.sensitive_layers` (and `--float-layers`) rank each int8 op by the error
it adds on its own, measured in its own int8 steps. This script measures the other thing:
how far each int8 tensor has drifted from the float network's same tensor when the whole
network runs in int8 — the accumulated error, relative to the float tensor's spread. Both
stride-8 ("det") exports, fp32 and int8 (calibrated on coco_mini train2017 crops, as
`int8_crop_agreement.py` does), run on N seeded coco_mini val2017 crops with every tensor
kept; tensors are matched by name (the converter names them after the Keras layers).

Columns: relative error RMS(int8 - float) / std(float); the tensor's int8 step over that
std (the grid's own share: uniform rounding adds 0.29 step); the widest channel's max |x|
over the median channel's (per-tensor grids suffer when it is large).

    python benchmarks/int8_error_profile.py --variant RT [--every 1] [--crops 8]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf
from int8_crop_agreement import SHARED, TRAIN, VAL

from kpose.deploy.exporter import export
from kpose.deploy.samples import crops_from
from kpose.model_io import load_model


def tensors(path: Path, crops: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float], list[tuple[str, str]]]:
    """Every 4-D float or int8 tensor of the file on `crops`, dequantized ({name: [N, H, W, C]}),
    each int8 tensor's scale, and (op, output tensor name) in execution order."""
    it = tf.lite.Interpreter(str(path), experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    details = it.get_tensor_details()
    keep = [t for t in details if len(t["shape"]) == 4 and t["dtype"] in (np.int8, np.float32)]
    values: dict[str, list[np.ndarray]] = {t["name"]: [] for t in keep}
    index = it.get_input_details()[0]["index"]
    for crop in crops:
        it.set_tensor(index, crop[None].astype(np.float32))
        it.invoke()
        for t in keep:
            v = it.get_tensor(t["index"])
            if t["dtype"] == np.int8:
                scale, zero = t["quantization"]
                v = (v.astype(np.float32) - zero) * scale
            values[t["name"]].append(v.astype(np.float32))
    scales = {t["name"]: t["quantization"][0] for t in keep if t["dtype"] == np.int8}
    order = [(op["op_name"], details[o]["name"]) for op in it._get_ops_details() for o in op["outputs"]
             if op["op_name"] != "DELEGATE"]  # a delegate node lists the outputs of the ops it took over
    return {n: np.concatenate(v) for n, v in values.items()}, scales, order


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="RT", choices=["RT", "RT_LITE", "I", "I_LITE", "II", "II_LITE"])
    ap.add_argument("--crops", type=int, default=8, help="coco_mini val2017 person crops (seeded)")
    ap.add_argument("--every", type=int, default=1, help="print every N-th tensor (the last always)")
    a = ap.parse_args()
    h5 = SHARED / "peers" / "efficientpose" / f"EfficientPose{a.variant}.h5"
    model = load_model(h5 if h5.is_file() else h5.with_suffix(".tflite"))  # II, II_LITE: .tflite weights
    crops = crops_from(VAL, model.input_size, a.crops, split="val", padding=model.crop_padding)
    tmp = Path(tempfile.mkdtemp(prefix="kpose-int8-profile-"))
    files = {p: export(model, "tflite", p, tmp / f"{a.variant}_det_{p}.tflite", heatmaps="detection",
                       calibration=TRAIN if p == "int8" else None) for p in ("fp32", "int8")}
    reference, _, _ = tensors(files["fp32"], crops)
    quantized, scales, order = tensors(files["int8"], crops)
    rows = []
    for op, name in order:
        if name not in reference or name not in quantized or reference[name].shape != quantized[name].shape:
            continue
        f, q = reference[name], quantized[name]
        spread = float(f.std()) + 1e-12
        channel_max = np.abs(f).reshape(-1, f.shape[-1]).max(axis=0)
        rows.append((float(np.sqrt(np.mean((q - f) ** 2)) / spread), scales.get(name, 0.0) / spread,
                     float(channel_max.max() / (np.median(channel_max) + 1e-12)), op, name))
    print(f"{a.variant} det int8 against det fp32, {len(crops)} crops, {len(rows)} tensors matched by name")
    print("| # | rel. error | step / std | widest / median channel | op | tensor |\n|---|---|---|---|---|---|")
    for i, (rel, step, widest, op, name) in enumerate(rows):
        if i % a.every == 0 or i == len(rows) - 1:
            print(f"| {i} | {rel:.3f} | {step:.3f} | {widest:.1f} | {op} | {name.split(';')[0][-90:]} |")


if __name__ == "__main__":
    main()
