"""Where post-training int8 error builds up in an official EfficientPose variant, op by op.

`kpose.deploy.tflite.sensitive_layers` (and `--float-layers`) rank each int8 op by the error
it adds on its own, measured in its own int8 steps. This script measures the other thing:
how far each int8 tensor has drifted from the float network's same tensor when the whole
network runs in int8 — the accumulated error, relative to the float tensor's spread. Both
stride-8 ("det") exports, fp32 and int8 (calibrated on coco_mini train2017 crops, as
`int8_crop_agreement.py` does), run on N seeded coco_mini val2017 crops with every tensor
kept; tensors are matched by name (the converter names them after the Keras layers).

First, each suspect alone, as keypoint movement on the crops: the output's int8 grid (the
fp32 maps rounded to it), the weights (int8 kernels per channel, activations in float),
then the int8 file. Then per tensor: relative error RMS(int8 - float) / std(float); its
offset share (the part of the squared error that is a constant per channel: what bias
correction could remove); the int8 step over that std (uniform rounding adds 0.29 step);
the int8 grid's range over the float values' 0.01-99.99 percentile range (what clipping
rare outliers could gain); the widest channel's max |x| over the median channel's.

    python benchmarks/int8_error_profile.py --variant RT [--every 1] [--crops 8]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf
from int8_crop_agreement import SHARED, TRAIN, VAL, distances

from kpose._tf import keras
from kpose.deploy.exporter import export
from kpose.deploy.graph import fold_batch_norms, with_heatmaps
from kpose.deploy.runtime import load_exported
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


def weights_only(model, crops: np.ndarray) -> np.ndarray:
    """Output maps of the Keras network with batch norms folded (as the converter folds them)
    and every convolution kernel rounded to int8 per output channel, activations in float."""
    net = fold_batch_norms(model.keras_model)
    copy = keras.models.clone_model(net)
    copy.set_weights(net.get_weights())
    for layer in copy.layers:
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)) or not layer.trainable:
            continue  # the fixed input normalisation and upscaling stay as they are
        weights = layer.get_weights()
        axes = (0, 1, 3) if isinstance(layer, keras.layers.DepthwiseConv2D) else (0, 1, 2)
        step = np.abs(weights[0]).max(axis=axes, keepdims=True) / 127 + 1e-12
        weights[0] = np.round(weights[0] / step) * step
        layer.set_weights(weights)
    return copy.predict(crops, verbose=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="RT", choices=["RT", "RT_LITE", "I", "I_LITE", "II", "II_LITE"])
    ap.add_argument("--crops", type=int, default=8, help="coco_mini val2017 person crops (seeded)")
    ap.add_argument("--every", type=int, default=1, help="print every N-th tensor (the last always)")
    a = ap.parse_args()
    h5 = SHARED / "peers" / "efficientpose" / f"EfficientPose{a.variant}.h5"
    model = with_heatmaps(load_model(h5 if h5.is_file() else h5.with_suffix(".tflite")),  # II, II_LITE: .tflite
                          "detection")
    crops = crops_from(VAL, model.input_size, a.crops, split="val", padding=model.crop_padding)
    tmp = Path(tempfile.mkdtemp(prefix="kpose-int8-profile-"))
    files = {p: export(model, "tflite", p, tmp / f"{a.variant}_det_{p}.tflite",
                       calibration=TRAIN if p == "int8" else None) for p in ("fp32", "int8")}
    reference, _, _ = tensors(files["fp32"], crops)
    quantized, scales, order = tensors(files["int8"], crops)

    # Three suspects, each alone: the output's int8 grid, the weights, and (below) the activations.
    maps = load_exported(files["fp32"]).heatmaps(crops)
    int8_maps = load_exported(files["int8"]).heatmaps(crops)
    levels = np.unique(int8_maps)
    step = float(np.min(np.diff(levels)))
    on_grid = np.clip(np.round((maps - levels[0]) / step) * step + levels[0], levels[0], levels[-1])
    keypoints = model.codec.batch_decode(maps)
    for label, other in (("the fp32 maps rounded to the int8 output's grid", on_grid),
                         ("int8 weights only (per channel, batch norms folded), float activations",
                          weights_only(model, crops)),
                         ("the int8 file", int8_maps)):
        d = distances(keypoints, model.codec.batch_decode(other))
        print(f"{a.variant} det, {label}: keypoints move {np.median(d):.2f} px median, "
              f"{np.percentile(d, 90):.2f} px p90 ({d.size} keypoints)")

    rows = []
    for op, name in order:
        if name not in reference or name not in quantized or reference[name].shape != quantized[name].shape:
            continue
        f, q = reference[name], quantized[name]
        channels = f.shape[-1]
        error = (q - f).reshape(-1, channels)
        spread = float(f.std()) + 1e-12
        channel_max = np.abs(f).reshape(-1, channels).max(axis=0)
        low, high = np.percentile(f, [0.01, 99.99])
        rows.append((float(np.sqrt(np.mean(error ** 2)) / spread),
                     float(np.mean(error.mean(axis=0) ** 2) / (np.mean(error ** 2) + 1e-30)),
                     scales.get(name, 0.0) / spread, scales.get(name, 0.0) * 255 / (high - low + 1e-12),
                     float(channel_max.max() / (np.median(channel_max) + 1e-12)), op, name))
    print(f"\n{a.variant} det int8 against det fp32, {len(crops)} crops, {len(rows)} tensors matched by name")
    print("| # | rel. error | offset share | step / std | int8 range / p0.01-99.99 | widest / median channel "
          "| op | tensor |\n|---|---|---|---|---|---|---|---|")
    for i, (rel, offset, step, span, widest, op, name) in enumerate(rows):
        if i % a.every == 0 or i == len(rows) - 1:
            print(f"| {i} | {rel:.3f} | {offset:.2f} | {step:.3f} | {span:.2f} | {widest:.1f} | {op} "
                  f"| {name.split(';')[0][-90:]} |")
    int8_rows = [r for r in rows if r[2] > 0]
    print(f"\nmedians over the {len(int8_rows)} int8 tensors: rel. error {np.median([r[0] for r in int8_rows]):.3f}, "
          f"offset share {np.median([r[1] for r in int8_rows]):.2f}, "
          f"int8 range / p0.01-99.99 range {np.median([r[3] for r in int8_rows]):.2f}")


if __name__ == "__main__":
    main()
