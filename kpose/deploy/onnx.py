"""ONNX export through tf2onnx, and an onnxruntime runner."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kpose.deploy.graph import INPUT_NAME, serving_function

OPSET = 17


def convert(net, input_size: tuple[int, int], path: str | Path, metadata: dict,
            names: tuple[str, ...] = ("heatmaps",)) -> Path:
    """Write `net` as ONNX (input `image`, outputs `names`), metadata in metadata_props."""
    import tf2onnx

    fn = serving_function(net, input_size, names)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=OPSET)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "kpose", json.dumps(metadata)
    path = Path(path)
    path.write_bytes(proto.SerializeToString())
    return path


def read_metadata(path: str | Path) -> dict:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for p in proto.metadata_props:
        if p.key == "kpose":
            return json.loads(p.value)
    raise ValueError(f"{path}: no 'kpose' metadata_props entry; export it with kpose.export")


class OnnxRunner:
    """onnxruntime (CPU) session over an exported .onnx."""

    def __init__(self, path: str | Path, num_threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if num_threads:
            opts.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        outs: dict[str, list] = {}
        for crop in np.asarray(crops, np.float32):
            for name, v in zip(self.outputs, self.session.run(None, {INPUT_NAME: crop[None]})):
                outs.setdefault(name, []).append(v[0])
        return {k: np.stack(v) for k, v in outs.items()}
