"""TF.js graph-model export through the tensorflowjs converter, and a node runner."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from kpose.deploy.graph import SIGNATURE_KEY

# Optional weight quantisation of the graph model: weights stored as float16 or
# uint8 (affine), dequantised to float32 when the model loads.
WEIGHT_QUANTIZATION = (None, "float16", "uint8")


def convert(saved_model_dir: str | Path, out_dir: str | Path, metadata: dict,
            quantization: str | None = None) -> Path:
    """Write model.json + weight shards; metadata goes to userDefinedMetadata.kpose."""
    # tensorflowjs imports tensorflow_decision_forests, whose welcome banner imports
    # IPython when stdout is not a terminal (pytest, CI logs).
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs_conv

    if quantization not in WEIGHT_QUANTIZATION:
        raise ValueError(f"tfjs quantization {quantization!r}; known: none, float16, uint8")
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    tfjs_conv.convert_tf_saved_model(
        str(saved_model_dir), str(out), signature_def=SIGNATURE_KEY,
        quantization_dtype_map={quantization: "*"} if quantization else None,
        use_structured_outputs_names=True, metadata={"kpose": metadata})
    model_json = out / "model.json"
    graph = json.loads(model_json.read_text())
    if unfuse_tensor_biases(graph):
        model_json.write_text(json.dumps(graph))
    return out


_FUSED = {"_FusedConv2D": "Conv2D", "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative"}
_ACTIVATIONS = ("Relu", "Relu6", "Elu", "Sigmoid", "Tanh")
_FUSION_ATTRS = ("fused_ops", "num_args", "epsilon", "leakyrelu_alpha", "TArgs")


def unfuse_tensor_biases(graph: dict) -> int:
    """Split convolutions the converter fused with an Add whose operand is not a [C] bias (a
    residual branch, a one-element constant) into the convolution and the Add; returns how many.

    When a convolution's own bias is zero, the converter folds the Add that follows into the
    convolution as its "bias": a residual branch ([B, H, W, C] tensor) or a constant of one
    element (hard-sigmoid's + 3 after a bias-free convolution). The webgl and CPU backends
    broadcast either; the wasm backend only takes a [C] bias and fails the model ("FusedConv2D
    only supports rank-1 bias", "FusedConv2D bias shape (1) does not match the number of
    output channels"). Unfused, every backend runs it.
    """
    nodes = graph["modelTopology"]["node"]
    weights = {w["name"]: w["shape"] for group in graph.get("weightsManifest", []) for w in group["weights"]}
    by_name = {n["name"]: n for n in nodes}
    added = []
    for node in nodes:
        if node["op"] not in _FUSED or len(node["input"]) < 3:
            continue
        bias = node["input"][2].split(":")[0]
        shape = weights.get(bias)
        if by_name.get(bias, {}).get("op") == "Const" and (
                shape is None or (len(shape) == 1 and shape[0] in (_out_channels(node, weights), None))):
            continue
        ops = [base64.b64decode(o).decode() for o in node["attr"]["fused_ops"]["list"].get("s", [])]
        if ops[:1] != ["BiasAdd"] or len(ops) > 2 or (len(ops) == 2 and ops[1] not in _ACTIVATIONS):
            raise ValueError(f"TF.js export: {node['name']} fuses {ops} with a tensor bias; kpose unfuses "
                             f"BiasAdd plus one of {_ACTIVATIONS} only. Report this model's layers")
        name, dtype = node["name"], node["attr"].get("T", {"type": "DT_FLOAT"})
        conv = {"name": f"{name}/conv", "op": _FUSED[node["op"]], "input": node["input"][:2],
                "attr": {k: v for k, v in node["attr"].items() if k not in _FUSION_ATTRS}}
        add = {"name": name if len(ops) == 1 else f"{name}/add", "op": "AddV2",
               "input": [conv["name"], node["input"][2]], "attr": {"T": dtype}}
        added += [conv, add]
        if len(ops) == 2:
            added.append({"name": name, "op": ops[1], "input": [add["name"]], "attr": {"T": dtype}})
        node["op"] = None  # replaced by the nodes above, the last of which takes its name
    graph["modelTopology"]["node"] = [n for n in nodes if n["op"] is not None] + added
    return len(nodes) - len(graph["modelTopology"]["node"]) + len(added)


def _out_channels(node: dict, weights: dict) -> int | None:
    """Output channels of a fused (depthwise) convolution, from its filter's shape (None:
    the filter is not a stored weight)."""
    kernel = weights.get(node["input"][1].split(":")[0])
    if kernel is None or len(kernel) != 4:
        return None
    return kernel[3] if node["op"] == "_FusedConv2D" else kernel[2] * kernel[3]


def read_metadata(model_dir: str | Path) -> dict:
    model_json = Path(model_dir) / "model.json"
    meta = json.loads(model_json.read_text()).get("userDefinedMetadata", {}).get("kpose")
    if meta is None:
        raise ValueError(f"{model_json}: no userDefinedMetadata.kpose; export it with kpose.export")
    return meta


def web_demo_dir() -> Path | None:
    """The repository's web_demo/ folder with its npm packages installed, if present."""
    here = Path(__file__).resolve().parents[2] / "web_demo"
    return here if (here / "node_modules" / "@tensorflow" / "tfjs").exists() else None


class TfjsRunner:
    """Runs a TF.js graph model in node (@tensorflow/tfjs, WASM backend) on crops.

    Needs node and `npm ci` in web_demo/; raises RuntimeError naming what is missing.
    """

    def __init__(self, model_dir: str | Path):
        self.model_dir = Path(model_dir).resolve()
        self.demo = web_demo_dir()
        if shutil.which("node") is None or self.demo is None:
            raise RuntimeError("running TF.js models needs node and the web_demo npm packages: "
                               "cd web_demo && npm ci")

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        crops = np.ascontiguousarray(crops, np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "in.bin", Path(tmp) / "out.json"
            src.write_bytes(crops.tobytes())
            subprocess.run(["node", str(self.demo / "tools" / "infer.mjs"), str(self.model_dir),
                            str(src), ",".join(map(str, crops.shape)), str(dst)],
                           check=True, cwd=self.demo, env=dict(os.environ))
            result = json.loads(dst.read_text())
            return {name: np.fromfile(o["file"], np.float32).reshape(o["shape"])
                    for name, o in result.items()}
