"""`kpose.export` and `export_all`: every format from one SavedModel, with a parity report.

The parity report compares each exported model with the Keras model on the same
crops: the largest absolute difference of the raw heatmaps, and the distance
between keypoints decoded (with the model's codec) from the two outputs.
Tolerances: float formats by raw output (fp32 1e-4, fp16 1e-2); quantised
formats by decoded keypoints (int8 and qat: the median distance over confidently
detected keypoints must be at most one cell of the detection grid); see TOLERANCES.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kpose.codecs import KEYPOINT_SCORE_THRESHOLD
from kpose.deploy import graph, metadata as meta_mod, onnx, tfjs, tflite
from kpose.deploy.runtime import runner
from kpose.deploy.samples import crops_from
from kpose.model_io import load_model
from kpose.models import BOTTOM_UP
from kpose.pose_model import PoseModel

FORMATS = ("tflite", "onnx", "tfjs")
PRECISIONS = ("fp32", "fp16", "int8", "qat")

# Per (format, precision): limit on raw max|delta| (None = not gated) and on the
# keypoint distance in input pixels (None = not gated). Keypoint distances are taken
# over keypoints the Keras model finds with score >= KEYPOINT_SCORE_MIN, whose peak
# is well defined; the median is gated (a handful of ambiguous low peaks may jump).
# "cell": one cell of the network's detection grid (kpose.deploy.graph.detection_stride),
# the resolution the heatmaps are computed at; a quantised model must agree with
# the float one to within it.
TOLERANCES = {
    "fp32": {"raw": 1e-4, "keypoint_median": None},
    "fp16": {"raw": 1e-2, "keypoint_median": None},
    "float16": {"raw": 1e-2, "keypoint_median": None},   # TF.js float16 weights
    "int8": {"raw": None, "keypoint_median": "cell"},
    "qat": {"raw": None, "keypoint_median": "cell"},
    "uint8": {"raw": None, "keypoint_median": "cell"},   # TF.js uint8 weights
}
KEYPOINT_SCORE_MIN = KEYPOINT_SCORE_THRESHOLD


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


def default_calibration(model, n: int = 64) -> np.ndarray:
    """Representative crops for int8: training-split crops of the model's training data."""
    return crops_from(model.config.get("data") or "synthetic", model.input_size, n, split="train",
                      padding=model.crop_padding)


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
           _saved_model: Path | None = None) -> Path:
    """Export a PoseModel (or a path kpose.load accepts) and return the written path.

    format: "tflite" (precision fp32 | fp16 | int8 | qat), "onnx" or "tfjs" (float;
      quantization None | "float16" | "uint8" stores TF.js weights compressed).
    output: a folder to write into under the default name (<name>_<precision>.tflite,
      <name>.onnx, <name>_tfjs/), or a .tflite / .onnx file path; default <run>/export/
      for a run folder, else exported/<name>/.
    calibration: int8 representative data: a data spec, image folder or crops array
      (default: 64 training crops of the model's training data).
    heatmaps: "full" (the network's output) or "detection" (EfficientPose: the stride-8
      maps of the last detection pass, without the upscaling layers; faster, 64x
      smaller output; the metadata's codec describes them). Files get a "_det" suffix.
    Every file carries the metadata of kpose.deploy.metadata.
    """
    model_arg = model
    model = graph.with_heatmaps(as_pose_model(model), heatmaps)
    if format not in FORMATS:
        raise ValueError(f"format {format!r}; known: {', '.join(FORMATS)}")
    if format != "tflite":
        precision = "qat" if model.config.get("quantization") == "qat" else "fp32"
    _check_precision(model, precision)
    name = export_name(model) + ("_det" if model.config.get("heatmaps") == "detection" else "")
    suffix = {"tflite": f"_{precision}.tflite", "onnx": ".onnx",
              "tfjs": f"_tfjs{'_' + quantization if quantization else ''}"}[format]
    out = Path(output) if output is not None else _default_out(model_arg, model)
    if out.suffix != {"tflite": ".tflite", "onnx": ".onnx", "tfjs": ""}[format] or format == "tfjs":
        out = out / f"{name}{suffix}"
    out.parent.mkdir(parents=True, exist_ok=True)
    info = meta_mod.model_metadata(model, precision if format == "tflite" else
                                   (quantization or precision))

    tmp = None
    try:
        saved = _saved_model
        if saved is None and format in ("tflite", "tfjs"):
            tmp = tempfile.mkdtemp(prefix="kpose-export-")
            saved = graph.write_saved_model(model, Path(tmp) / "saved_model")
        if format == "tflite":
            calib = None
            if precision == "int8":
                calib = (default_calibration(model) if calibration is None
                         else crops_from(calibration, model.input_size, 64, split="train",
                                         padding=model.crop_padding))
            data = tflite.convert(saved, precision, calib)
            out.write_bytes(meta_mod.embed_tflite_metadata(data, info))
        elif format == "onnx":
            onnx.convert(graph.export_network(model), model.input_size, out, info, graph.output_names(model))
        else:
            tfjs.convert(saved, out, info, quantization)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def compare(model, exported_output: np.ndarray, reference: np.ndarray) -> dict:
    """Raw and decoded differences between an exported model's heatmaps and Keras's."""
    codec = model.codec
    ref_kp = codec.batch_decode(reference)
    exp_kp = codec.batch_decode(exported_output)
    dist = np.linalg.norm(ref_kp[..., :2] - exp_kp[..., :2], axis=-1)
    confident = ref_kp[..., 2] >= KEYPOINT_SCORE_MIN
    d = dist[confident] if confident.any() else dist.ravel()
    return {
        "max_abs_diff": float(np.abs(exported_output - reference).max()),
        "mean_abs_diff": float(np.abs(exported_output - reference).mean()),
        "keypoint_median_px": float(np.median(d)),
        "keypoint_p90_px": float(np.percentile(d, 90)),
        "keypoint_max_px": float(d.max()),
        "keypoints_compared": int(d.size),
    }


def _limits(model, precision: str) -> dict:
    tol = dict(TOLERANCES[precision])
    if tol["keypoint_median"] == "cell":
        tol["keypoint_median"] = float(graph.detection_stride(model))
    return tol


def export_all(model, output: str | Path | None = None, check: bool = True, images=None,
               calibration=None, formats=FORMATS, precisions=None, tfjs_quantization: str | None = None,
               heatmaps: str = "full", num_images: int = 8, progress: bool = True) -> dict:
    """Write every format (TFLite at each precision the model supports, ONNX, TF.js) and,
    with `check`, a parity report against the Keras model: `parity.json` and `parity.md`.

    images: what to compare on (data spec, image folder/list, or crops); default the
    model's validation data. precisions: TFLite precisions (default: fp32, fp16, int8,
    or qat for a QAT model). Returns the report; report["passed"] is False when a
    format exceeds its tolerance.
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
    jobs = [("tflite", p) for p in precisions] if "tflite" in formats else []
    jobs += [(f, None) for f in formats if f != "tflite"]

    report = {"model": export_name(model), "output": str(out), "formats": [], "passed": True}
    crops = reference = None
    if check:
        crops = crops_from(images if images is not None else (model.config.get("data") or "synthetic"),
                           model.input_size, num_images, split="val", padding=model.crop_padding)
        net = graph.export_network(model)
        reference = np.concatenate([np.asarray(net(c[None], training=False)) for c in crops])
        report["images"] = str(images) if images is not None and not isinstance(images, np.ndarray) else "validation crops"
        report["num_crops"] = int(len(crops))

    with tempfile.TemporaryDirectory(prefix="kpose-export-") as tmp:
        saved = graph.write_saved_model(model, Path(tmp) / "saved_model")
        for fmt, prec in tqdm(jobs, desc="export", disable=not progress):
            t0 = time.time()
            path = export(model, fmt, prec or "fp32", out, calibration=calibration,
                          quantization=tfjs_quantization if fmt == "tfjs" else None, _saved_model=saved)
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
                    got = runner(path)(crops)["heatmaps"]
                except RuntimeError as e:  # e.g. TF.js without node: reported, not hidden
                    entry.update({"status": "not run", "reason": str(e)})
                    report["passed"] = False
                    report["formats"].append(entry)
                    continue
                entry.update(compare(model, got, reference))
                tol = _limits(model, entry["precision"])
                entry["tolerance"] = tol
                fails = []
                if tol["raw"] is not None and entry["max_abs_diff"] > tol["raw"]:
                    fails.append(f"max|d| {entry['max_abs_diff']:.2e} > {tol['raw']:.0e}")
                if tol["keypoint_median"] is not None and entry["keypoint_median_px"] > tol["keypoint_median"]:
                    fails.append(f"median keypoint distance {entry['keypoint_median_px']:.2f} px "
                                 f"> {tol['keypoint_median']:.2f} px")
                if entry.get("gpu_delegate_compatible") is False or entry.get("forbidden_ops"):
                    fails.append("not GPU-delegate clean")
                entry["status"] = "ok" if not fails else "FAIL: " + "; ".join(fails)
                report["passed"] &= not fails
            report["formats"].append(entry)
    if check:
        (out / "parity.json").write_text(json.dumps(report, indent=2))
        (out / "parity.md").write_text(parity_markdown(report))
    return report


def _size(path: Path) -> int:
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def parity_markdown(report: dict) -> str:
    lines = [f"# Parity report: {report['model']}", "",
             f"{report.get('num_crops', 0)} crops from {report.get('images')}; reference = the Keras model. "
             f"Keypoint distances in input pixels over keypoints with Keras score >= {KEYPOINT_SCORE_MIN}.", "",
             "| format | precision | size | max abs diff | median kp dist | p90 kp dist | GPU delegate | status |",
             "|---|---|---|---|---|---|---|---|"]
    for e in report["formats"]:
        gpu = {True: "clean", False: "INCOMPATIBLE", None: "-"}[e.get("gpu_delegate_compatible")]
        lines.append(f"| {e['format']} | {e['precision']} | {e['bytes'] / 1e6:.2f} MB | "
                     f"{e.get('max_abs_diff', float('nan')):.2e} | {e.get('keypoint_median_px', float('nan')):.3f} | "
                     f"{e.get('keypoint_p90_px', float('nan')):.3f} | {gpu} | {e.get('status', '-')} |")
    lines += ["", "PASSED" if report["passed"] else "FAILED", ""]
    return "\n".join(lines)
