"""`kpose.export` and `export_all`: every format from one serving function, with a parity report.

The parity report compares each exported model with the Keras model on the inputs
the model's `predict` makes (person crops for top-down models, whole images fitted
to the input for bottom-up models): raw outputs, and what the codec decodes from
them; the measures and tolerances are in kpose.deploy.parity.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kpose.deploy import graph, metadata as meta_mod, onnx, tfjs, tflite
from kpose.deploy.parity import (KEYPOINT_SCORE_MIN, TOLERANCES, compare, compare_bottom_up, failures,
                                 fp16_weight_effect, limits, parity_markdown)
from kpose.deploy.runtime import runner
from kpose.deploy.samples import model_inputs
from kpose.model_io import load_model
from kpose.models import BOTTOM_UP
from kpose.pose_model import PoseModel

FORMATS = ("tflite", "onnx", "tfjs")
PRECISIONS = ("fp32", "fp16", "int8", "qat")
# Calibration and parity data when the model's config names none: kpose's synthetic
# data set (its crowd variant, several people per image, for bottom-up models).
DEFAULT_DATA = {"top_down": "synthetic", "bottom_up": "synthetic:crowd"}

__all__ = ["FORMATS", "PRECISIONS", "TOLERANCES", "KEYPOINT_SCORE_MIN", "export", "export_all", "compare",
           "parity_markdown", "default_calibration"]


def as_pose_model(model) -> PoseModel:
    """A PoseModel, or the model at a path (run folder, model folder, official .h5)."""
    return model if isinstance(model, PoseModel) else load_model(model)


def export_name(model) -> str:
    cfg = model.config
    return cfg.get("recipe") or f"{cfg['family']}_{cfg['variant']}"


def _default_out(model_arg, model) -> Path:
    if isinstance(model_arg, (str, Path)) and Path(model_arg).is_dir():
        return Path(model_arg) / "export"
    return Path("exported") / export_name(model)


def _data(model):
    return model.config.get("data") or DEFAULT_DATA[model.task]


def default_calibration(model, n: int = 64) -> np.ndarray:
    """Representative inputs for int8 from the training split of the model's training data:
    person crops (top-down) or whole images fitted to the input (bottom-up)."""
    return model_inputs(model, _data(model), n, split="train")


def _check_options(model, format: str, precision: str, calibration, quantization, float_layers: int = 0) -> None:
    """Refuse combinations export would otherwise ignore: precisions other than float for
    ONNX and TF.js, TF.js weight quantisation elsewhere, calibration data or float layers
    without int8."""
    qat = model.config.get("quantization") == "qat"
    if format != "tflite" and precision not in (("fp32", "qat") if qat else ("fp32",)):
        tip = " (TF.js can store float16 or uint8 weights: quantization='float16' | 'uint8')" \
            if format == "tfjs" else ""
        raise ValueError(f"precision {precision!r} is for format 'tflite'; {format} exports the "
                         f"{'QAT' if qat else 'float'} model as it is (precision 'fp32'){tip}")
    if quantization is not None and format != "tfjs":
        raise ValueError(f"quantization={quantization!r} compresses TF.js weights; for {format} use "
                         f"precision (tflite: fp16 | int8)")
    if calibration is not None and not (format == "tflite" and precision == "int8"):
        raise ValueError(f"calibration data is used by tflite int8 only, not by {format} {precision}")
    if float_layers and not (format == "tflite" and precision == "int8"):
        raise ValueError(f"float_layers keeps layers of a tflite int8 model in float; {format} {precision} "
                         f"has no int8 layers")
    if float_layers < 0:
        raise ValueError(f"float_layers must be >= 0 (layers kept in float), got {float_layers}")


def _check_precision(model, precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; known: {', '.join(PRECISIONS)}")
    is_qat = model.config.get("quantization") == "qat"
    if precision == "qat" and not is_qat:
        raise ValueError("precision 'qat' needs a quantisation-aware model: train it with "
                         "kpose.train(..., qat=True) (or `kpose train RECIPE --qat`) and export that run")
    if is_qat and precision != "qat":
        raise ValueError(f"this model was trained with QAT: export it with precision 'qat', not {precision!r}")


def export(model, format: str = "tflite", precision: str = "fp32", output: str | Path | None = None,
           calibration=None, quantization: str | None = None, heatmaps: str = "full",
           float_layers: int = 0) -> Path:
    """Export a PoseModel (or a path kpose.load accepts) and return the written path.

    format: "tflite" (precision fp32 | fp16 | int8 | qat), "onnx" or "tfjs" (float;
      quantization None | "float16" | "uint8" stores TF.js weights compressed).
    output: a folder to write into under the default name (<name>_<precision>.tflite,
      <name>.onnx, <name>_tfjs/), or a .tflite / .onnx file path; default <run>/export/
      for a run folder, else exported/<name>/.
    calibration: int8 representative data: a data spec, image folder or array of model
      inputs (default: 64 training inputs of the model's training data: person crops for a
      top-down model, whole images fitted to the input for a bottom-up one).
    heatmaps: "full" (the network's output) or "detection" (EfficientPose: the stride-8
      maps of the last detection pass, without the upscaling layers; faster, 64x
      smaller output; the metadata's codec describes them). Files get a "_det" suffix.
    float_layers: int8 only: keep this many layers in float32, those int8 damages most
      on the calibration inputs (kpose.deploy.tflite.sensitive_layers); the metadata lists
      them. A few early layers can hold most of int8's error (docs/results.md); the file
      is named <name>_int8_float<N>.tflite.
    Every file carries the metadata of kpose.deploy.metadata.
    """
    model_arg = model
    model = graph.with_heatmaps(as_pose_model(model), heatmaps)
    if format not in FORMATS:
        raise ValueError(f"format {format!r}; known: {', '.join(FORMATS)}")
    _check_options(model, format, precision, calibration, quantization, float_layers)
    if format != "tflite":
        precision = "qat" if model.config.get("quantization") == "qat" else "fp32"
    _check_precision(model, precision)
    name = export_name(model) + ("_det" if model.config.get("heatmaps") == "detection" else "")
    suffix = {"tflite": f"_{precision}{f'_float{float_layers}' if float_layers else ''}.tflite", "onnx": ".onnx",
              "tfjs": f"_tfjs{'_' + quantization if quantization else ''}"}[format]
    out = Path(output) if output is not None else _default_out(model_arg, model)
    if out.suffix != {"tflite": ".tflite", "onnx": ".onnx", "tfjs": ""}[format] or format == "tfjs":
        out = out / f"{name}{suffix}"
    out.parent.mkdir(parents=True, exist_ok=True)
    info = meta_mod.model_metadata(model, precision if format == "tflite" else
                                   (quantization or precision))

    calib = None
    if format == "tflite" and precision == "int8":
        calib = (default_calibration(model) if calibration is None
                 else model_inputs(model, calibration, 64, split="train"))
    net = graph.export_network(model, precision, format, calib)
    if format == "tflite":
        serve = graph.export_function(model, net)
        names = tflite.sensitive_layers(serve, calib)[:float_layers] if float_layers else []
        if len(names) < float_layers:
            raise ValueError(f"float_layers={float_layers}, but the int8 model has {len(names)} layers")
        data = tflite.convert(serve, precision, calib, float_layers=names)
        if names:
            info = dict(info, float_layers=names)
        out.write_bytes(meta_mod.embed_tflite_metadata(data, info))
    elif format == "onnx":
        onnx.convert(net, model.input_size, out, info, graph.output_names(model))
    else:
        with tempfile.TemporaryDirectory(prefix="kpose-export-") as tmp:
            tfjs.convert(graph.write_saved_model(model, Path(tmp) / "saved_model", net), out, info, quantization)
    return out


def export_all(model, output: str | Path | None = None, check: bool = True, images=None,
               calibration=None, formats=FORMATS, precisions=None, tfjs_quantization: str | None = None,
               heatmaps: str = "full", num_images: int = 8, float_layers: int = 0,
               progress: bool = True) -> dict:
    """Write every format (TFLite at each precision the model supports, ONNX, TF.js) and,
    with `check`, a parity report against the Keras model: `parity.json` and `parity.md`.

    images: what to compare on (data spec, image folder/list, or an array of model inputs);
    default the model's validation data; a top-down model sees person crops, a bottom-up
    model whole images fitted to its input. precisions: TFLite precisions (default: fp32,
    fp16, int8, or qat for a QAT model); float_layers: of the int8 file (see export).
    Returns the report; report["passed"] is False when a format exceeds its tolerance
    (kpose.deploy.parity).
    """
    model_arg = model
    model = graph.with_heatmaps(as_pose_model(model), heatmaps)
    out = Path(output) if output is not None else _default_out(model_arg, model)
    out.mkdir(parents=True, exist_ok=True)
    is_qat = model.config.get("quantization") == "qat"
    if precisions is None:
        precisions = ("qat",) if is_qat else ("fp32", "fp16", "int8")
    for p in precisions:
        _check_precision(model, p)
    if float_layers and not ("tflite" in formats and "int8" in precisions):
        raise ValueError(f"float_layers keeps layers of a tflite int8 model in float; this export writes no "
                         f"tflite int8 (formats {list(formats)}, precisions {list(precisions)})")
    jobs = [("tflite", p) for p in precisions] if "tflite" in formats else []
    jobs += [(f, None) for f in formats if f != "tflite"]

    report = {"model": export_name(model), "task": model.task, "outputs": list(graph.output_names(model)),
              "output": str(out), "formats": [], "passed": True}
    inputs = reference = None
    if check:
        inputs = model_inputs(model, images if images is not None else _data(model), num_images, split="val")
        reference = _reference(model, inputs)
        report["images"] = (str(images) if images is not None and not isinstance(images, np.ndarray)
                            else "validation data")
        report["num_inputs"] = int(len(inputs))
        if ("tflite" in formats and "fp16" in precisions) or ("tfjs" in formats and tfjs_quantization == "float16"):
            report["fp16_weights_max_abs_diff"] = fp16_weight_effect(model, inputs, reference)

    for fmt, prec in tqdm(jobs, desc="export", disable=not progress):
        t0 = time.time()
        path = export(model, fmt, prec or "fp32", out, calibration=calibration if prec == "int8" else None,
                      quantization=tfjs_quantization if fmt == "tfjs" else None,
                      float_layers=float_layers if prec == "int8" else 0)
        entry = {"format": fmt,
                 "precision": prec or ("qat" if is_qat else (tfjs_quantization if fmt == "tfjs" and tfjs_quantization else "fp32")),
                 "path": str(path), "seconds": round(time.time() - t0, 1),
                 "bytes": _size(path)}
        if fmt == "tflite":
            ok, _ = tflite.gpu_compatibility(path)
            ops = set(tflite.op_names(path))
            entry["gpu_delegate_compatible"] = ok
            entry["forbidden_ops"] = sorted(ops & tflite.FORBIDDEN_OPS)
        if check:
            try:
                got = runner(path)(inputs)
            except RuntimeError as e:  # e.g. TF.js without node: reported, not hidden
                entry.update({"status": "not run", "reason": str(e)})
                report["passed"] = False
                report["formats"].append(entry)
                continue
            entry.update(compare_bottom_up(model, got, reference) if model.task == BOTTOM_UP
                         else compare(model, got[graph.OUTPUT_NAME], reference[graph.OUTPUT_NAME]))
            tol = limits(model, entry["precision"])
            entry["tolerance"] = tol
            fails = failures(entry, tol)
            entry["status"] = "ok" if not fails else "FAIL: " + "; ".join(fails)
            report["passed"] &= not fails
        report["formats"].append(entry)
    if check:
        (out / "parity.json").write_text(json.dumps(report, indent=2))
        (out / "parity.md").write_text(parity_markdown(report))
    return report


def _reference(model, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """The Keras model's outputs {name: [B, ...]} for `inputs`, one input at a time as the
    exported models are run."""
    net, names = graph.export_network(model), graph.output_names(model)
    outs: dict[str, list] = {n: [] for n in names}
    for x in inputs:
        out = net(x[None], training=False)
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        for n, o in zip(names, out[-len(names):]):
            outs[n].append(np.asarray(o)[0])
    return {n: np.stack(v) for n, v in outs.items()}


def _size(path: Path) -> int:
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
