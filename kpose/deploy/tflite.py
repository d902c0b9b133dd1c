"""TFLite conversion (fp32, fp16, PTQ int8, QAT int8), GPU-delegate checks and a runner."""
from __future__ import annotations

import contextlib
import csv
import io
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from kpose._tf import tf
from kpose.deploy.graph import SIGNATURE_KEY
from kpose.deploy.metadata import sign_tflite
from kpose.native_log import CONVERTER_NOISE, filtered_stderr

PRECISIONS = ("fp32", "fp16", "int8", "qat")
# Decoding ops that must stay out of a phone graph: the GPU delegate lacks them
# or they force a CPU fallback.
FORBIDDEN_OPS = frozenset({"GATHER_ND", "ARG_MAX", "CAST"})


def convert(serve, precision: str = "fp32",
            calibration: np.ndarray | None = None, float_layers: Sequence[str] = ()) -> bytes:
    """Convert the export serving function (kpose.deploy.graph.export_function) to a .tflite
    flatbuffer with the export signature.

    fp16: float16 weights, float compute (the GPU delegate runs it in fp16).
    int8: post-training full-integer quantisation; `calibration` = representative
      model inputs [N, H, W, 3] (float32 0..255) drawn from the training data (person
      crops for a top-down model, whole fitted images for a bottom-up one).
      float_layers: names of layers (their output tensors, as `sensitive_layers` gives
      them) kept in float32, with QUANTIZE / DEQUANTIZE around each: mixed precision.
    qat: the function runs a quantisation-aware network; its fake-quant ranges
      give a full-integer model without calibration.
    Inputs and outputs stay float32 (QUANTIZE/DEQUANTIZE at the ends) so every
    precision is fed and decoded the same way.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if float_layers and precision != "int8":
        raise ValueError(f"float_layers keeps layers of an int8 model in float; precision {precision!r} has none")
    function = serve.get_concrete_function()
    if precision == "int8":
        conv = _int8_converter(function, calibration, full_integer=not float_layers)
    else:
        conv = _converter(function)
        conv.optimizations = [tf.lite.Optimize.DEFAULT] if precision in ("fp16", "qat") else []
        if precision == "fp16":
            conv.target_spec.supported_types = [tf.float16]
    if float_layers:
        data = _mixed_precision(conv, float_layers)
    else:
        with _quiet():
            data = conv.convert()
    outputs = {name: tensor.name.split(":")[0] for name, tensor in function.structured_outputs.items()}
    return sign_tflite(data, outputs)


def _converter(function):
    """A converter of the function frozen: its variables become constants of the graph it
    converts, instead of a SavedModel written and read back (which the converter does for a
    function with a trackable object other than a function). Same ops and outputs, 3-4x
    faster, QAT networks most (docs/results.md, 2026-12-07); the frozen graph has no
    signature, so `convert` adds it."""
    return tf.lite.TFLiteConverter.from_concrete_functions([function], trackable_obj=function)


def _mixed_precision(conv, float_layers: Sequence[str]) -> bytes:
    """int8 but for `float_layers`. Raises unless exactly those layers compute in float: fewer
    when a name matches no layer, more when an op int8 cannot run was left in float."""
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(float_layers))
    with _quiet():
        data = tf.lite.experimental.QuantizationDebugger(
            converter=conv, debug_dataset=conv.representative_dataset,
            debug_options=options).get_nondebug_quantized_model()
    computing = float_compute_ops(data)
    if len(computing) != len(float_layers):
        raise ValueError(f"float_layers: {len(float_layers)} names given, {len(computing)} layers compute in "
                         f"float ({', '.join(computing) or 'none'}); give names from "
                         f"kpose.deploy.tflite.sensitive_layers (output tensor names), and export without "
                         f"float_layers to see which op int8 cannot run")
    return data


def _int8_converter(function, calibration, full_integer: bool = True):
    if calibration is None or len(calibration) == 0:
        raise ValueError("int8 export needs calibration inputs (representative data); "
                         "pass calibration= a data spec or an array [N, H, W, 3]")
    calib = np.asarray(calibration, np.float32)
    conv = _converter(function)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([c[None]] for c in calib)
    if full_integer:  # fail instead of silently keeping a float op
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv


def _rms_steps(float_values, quantized_values, scale, zero_point) -> float:
    """RMS difference between an op's float output and its int8 output, in int8 steps."""
    dequantized = (np.asarray(quantized_values, np.int32) - zero_point) * scale
    return float(np.sqrt(np.mean((dequantized - np.asarray(float_values)) ** 2)) / scale)


def sensitive_layers(serve, calibration: np.ndarray, num_inputs: int = 16) -> list[str]:
    """The int8 model's layers, most damaged by quantisation first: each op's output is
    compared with the float op's on the same (quantised) inputs over `num_inputs`
    calibration inputs (TFLite's QuantizationDebugger), error in int8 steps (RMS / scale).
    Names are output tensor names, as `convert(..., float_layers=)` takes them."""
    conv = _int8_converter(serve.get_concrete_function(), np.asarray(calibration)[:num_inputs], full_integer=False)
    options = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics={"rms_steps": _rms_steps})
    debugger = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=conv.representative_dataset,
                                                         debug_options=options)
    with _quiet():
        debugger.run()
    table = io.StringIO()
    debugger.layer_statistics_dump(table)
    rows = list(csv.DictReader(io.StringIO(table.getvalue())))
    return [r["tensor_name"] for r in sorted(rows, key=lambda r: -float(r["rms_steps"]))]


@contextlib.contextmanager
def _quiet():
    """Silence the converter's C++ logging to stderr (it prints per-op statistics and, through
    absl, which no environment variable reaches, its ignored options) and its warning that a
    QAT graph's input has no quantisation statistics: the input stays float32 (a QUANTIZE op at
    the start takes the input's fake-quant range), so there are none to give."""
    old = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    try:
        with warnings.catch_warnings(), filtered_stderr(CONVERTER_NOISE):
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            yield
    finally:
        if old is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = old


def op_names(tflite: bytes | str | Path) -> list[str]:
    """Builtin op names of a .tflite model, in execution order."""
    interp = _interpreter(tflite)
    return [d["op_name"] for d in interp._get_ops_details()]


def float_ops(tflite: bytes | str | Path) -> list[str]:
    """Ops that compute in float: any op other than the boundary QUANTIZE (graph input
    -> int8) and DEQUANTIZE (int8 -> graph output) that touches a float tensor.
    Empty for a full-integer model; int8 -> int8 QUANTIZE ops (requantisation where,
    e.g., a concatenation's inputs have different ranges) are integer ops."""
    interp = _interpreter(tflite)
    dtype = {d["index"]: np.dtype(d["dtype"]) for d in interp.get_tensor_details()}
    graph_in = {d["index"] for d in interp.get_input_details()}
    graph_out = {d["index"] for d in interp.get_output_details()}
    out = []
    for op in interp._get_ops_details():
        ins = [i for i in op["inputs"] if i >= 0]
        outs = list(op["outputs"])
        if op["op_name"] == "QUANTIZE" and set(ins) <= graph_in:
            continue
        if op["op_name"] == "DEQUANTIZE" and set(outs) <= graph_out:
            continue
        if any(dtype[t] == np.float32 for t in ins + outs):
            out.append(op["op_name"])
    return out


def float_compute_ops(tflite: bytes | str | Path) -> list[str]:
    """`float_ops` without the QUANTIZE / DEQUANTIZE that convert between int8 and float:
    the layers that compute in float (those kept by `convert(..., float_layers=)`)."""
    return [op for op in float_ops(tflite) if op not in ("QUANTIZE", "DEQUANTIZE")]


def tensor_types(tflite: bytes | str | Path) -> dict[str, int]:
    """Count of tensor dtypes (by numpy name) in the model."""
    counts: dict[str, int] = {}
    for d in _interpreter(tflite).get_tensor_details():
        name = np.dtype(d["dtype"]).name
        counts[name] = counts.get(name, 0) + 1
    return counts


def concatenation_scales(tflite: bytes | str | Path) -> list[float]:
    """The int8 scale of each CONCATENATION's output, in execution order (its inputs share it:
    kpose.models.concat_scales says why that matters); empty for a float model."""
    interp = _interpreter(tflite)
    scale = {d["index"]: d["quantization"][0] for d in interp.get_tensor_details()}
    return [float(scale[op["outputs"][0]]) for op in interp._get_ops_details()
            if op["op_name"] == "CONCATENATION" and scale[op["outputs"][0]] > 0]


def gpu_compatibility(tflite: bytes | str | Path) -> tuple[bool, str]:
    """(compatible, analyzer report) from TFLite's offline GPU-delegate analyzer."""
    content = Path(tflite).read_bytes() if isinstance(tflite, (str, Path)) else bytes(tflite)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tf.lite.experimental.Analyzer.analyze(model_content=content, gpu_compatibility=True)
    report = buf.getvalue()
    ok = ("looks compatible with GPU delegate" in report
          and "GPU COMPATIBILITY WARNING" not in report)
    return ok, report


def _interpreter(tflite, num_threads: int | None = None):
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(tflite, (str, Path)):
        return Interpreter(model_path=str(tflite), num_threads=num_threads)
    return Interpreter(model_content=bytes(tflite), num_threads=num_threads)


class TFLiteRunner:
    """Runs an exported .tflite through its signature with the LiteRT interpreter (XNNPACK)."""

    def __init__(self, tflite: bytes | str | Path, num_threads: int | None = None):
        self.interpreter = _interpreter(tflite, num_threads)
        self.runner = self.interpreter.get_signature_runner(SIGNATURE_KEY)

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """crops [B, H, W, 3] float32 0..255 -> {output name: [B, ...]} (one crop per call)."""
        outs: dict[str, list] = {}
        for crop in np.asarray(crops, np.float32):
            for k, v in self.runner(image=crop[None]).items():
                outs.setdefault(k, []).append(v[0])
        return {k: np.stack(v) for k, v in outs.items()}
