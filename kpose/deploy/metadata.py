"""The metadata every exported model carries, and how it is stored in each format.

One JSON object (schema below) describes how to feed the model and decode its
output. It is written by `model_metadata` from the PoseModel's config and is
stored
* in a ``.tflite`` twice from the same bytes: as the flatbuffer's ``Model.metadata``
  entry ``kpose`` (read by kpose, or any flatbuffer reader), and as the associated
  file ``kpose.json`` in a zip appended to the model, which is the TFLite metadata
  convention Android's ``MetadataExtractor.getAssociatedFile`` reads;
* in TF.js ``model.json`` as ``userDefinedMetadata.kpose``;
* in ONNX as the ``metadata_props`` entry ``kpose``.

Schema (version 1)::

    {"format": "kpose", "schema_version": 1, "kpose_version": str,
     "model": {"name", "family", "variant", "task": "top_down" | "bottom_up"},
     "precision": "fp32" | "fp16" | "int8" | "qat",
     (int8 with layers kept in float:) "float_layers": [their output tensor names],
     "signature": "serving_default",
     "input": {"name": "image", "shape": [1, H, W, 3], "dtype": "float32", "layout": "NHWC",
               "channels": "RGB", "range": [0, 255], "normalization": "in_graph"},
     "outputs": [{"name": "heatmaps", "shape": [1, h, w, K], "dtype": "float32",
                  "stride": [sx, sy], "content": "keypoint_heatmaps"},
                 (bottom_up:) {"name": "pafs", "shape": [1, h, w, 2L], ..., "content": "part_affinity_fields"}
                 or, for a limb heatmap codec, {"name": "limb_heatmaps", "shape": [1, h, w, L], ...,
                 "content": "limb_heatmaps"} (L: the codec's limbs)],
     "skeleton": {"name", "keypoints": [K names], "flip_pairs": [[a, b]], "limbs": [[a, b]],
                  "oks_sigmas": [K] | null},
     "codec": {"type": "heatmap", "input_size": [H, W], "heatmap_size": [h, w], "sigma", "dark_radius"},
     top_down: "crop": {"padding": <the model's crop_padding, 1.25 by default>,
                        "whole_image_padding": 1.0, "interpolation": "bilinear", "fill": 0},
     bottom_up: "image": IMAGE_FIT}
    (codec of a bottom-up model: {"type": "paf", "input_size", "heatmap_size", "limbs",
     "limb_width", "sigma", "dark_radius", and the grouping settings "peak_threshold",
     "smooth_sigma", "upsample", "num_samples", "paf_threshold", "min_sample_fraction",
     "max_limb_fraction", "min_keypoints": see kpose.codecs.paf; or LimbHeatmapCodec.to_dict():
     {"type": "limb_heatmap", ..., "limb_sigma", "round_ends", "limb_threshold" in place of
     "limb_width" and "paf_threshold": see kpose.codecs.limb_heatmap})

A bottom-up model sees the whole image scaled to fit inside the input, aspect kept,
centred, the rest filled with 0 (kpose.transforms.fit_matrix); the people decoded
from its outputs are in input pixels, mapped back to the image by the inverse.
"""
from __future__ import annotations

import importlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from kpose.deploy.graph import INPUT_NAME, OUTPUT_NAME, SIGNATURE_KEY, limb_output
from kpose.models import BOTTOM_UP
from kpose.version import __version__

SCHEMA_VERSION = 1
# How a bottom-up model's input is made from an image of height h and width w (input
# H x W; pixel centres: pixel i covers [i, i + 1)): kpose.transforms.fit_matrix.
IMAGE_FIT = {"fit": "scale to fit inside the input, aspect kept, centred (kpose.transforms.fit_matrix)",
             "scale": "min(H / h, W / w)",
             "image_to_input": "x_in = scale * (x + 0.5 - w / 2) + W / 2 - 0.5, "
                               "y_in = scale * (y + 0.5 - h / 2) + H / 2 - 0.5",
             "interpolation": "bilinear", "fill": 0}
METADATA_NAME = "kpose"
ASSOCIATED_FILE = "kpose.json"


def model_metadata(model, precision: str = "fp32") -> dict:
    """The metadata object for a PoseModel exported at `precision`."""
    cfg = model.config
    skeleton = model.skeleton
    codec = model.codec
    codec_dict = codec.to_dict()
    h, w = model.input_size
    hh, hw = codec.heatmap_size
    sx, sy = w / hw, h / hh
    outputs = [{"name": OUTPUT_NAME, "shape": [1, hh, hw, skeleton.num_keypoints],
                "dtype": "float32", "stride": [sx, sy], "content": "keypoint_heatmaps"}]
    if model.task == BOTTOM_UP:
        # The codec's limbs (a limb heatmap codec may add redundant ones to the skeleton's).
        name, per_limb, content = limb_output(codec_dict)
        outputs.append({"name": name, "shape": [1, hh, hw, per_limb * len(codec.limbs)],
                        "dtype": "float32", "stride": [sx, sy], "content": content})
    meta = {
        "format": "kpose", "schema_version": SCHEMA_VERSION, "kpose_version": __version__,
        "model": {"name": cfg.get("recipe") or f"{cfg['family']}_{cfg['variant']}",
                  "family": cfg["family"], "variant": cfg["variant"], "task": model.task},
        "precision": precision,
        "signature": SIGNATURE_KEY,
        "input": {"name": INPUT_NAME, "shape": [1, h, w, 3], "dtype": "float32", "layout": "NHWC",
                  "channels": "RGB", "range": [0, 255], "normalization": "in_graph"},
        "outputs": outputs,
        "skeleton": {"name": skeleton.name, "keypoints": list(skeleton.keypoints),
                     "flip_pairs": [list(p) for p in skeleton.flip_pairs],
                     "limbs": [list(p) for p in skeleton.limbs],
                     "oks_sigmas": None if skeleton.sigmas is None else [float(s) for s in skeleton.sigmas]},
        "codec": codec_dict,
    }
    if model.task == BOTTOM_UP:
        meta["image"] = dict(IMAGE_FIT)
    else:
        meta["crop"] = {"padding": model.crop_padding, "whole_image_padding": 1.0,
                        "interpolation": "bilinear", "fill": 0}
    return meta


def _schema():
    # tf.lite's public namespace does not expose these modules; import them by path.
    return (importlib.import_module("tensorflow.lite.python.schema_py_generated"),
            importlib.import_module("tensorflow.lite.tools.flatbuffer_utils"))


def sign_tflite(tflite: bytes, outputs: dict[str, str]) -> bytes:
    """A copy of a .tflite flatbuffer with the export signature (``serving_default``: input
    ``image``, the outputs by name) over its main graph. outputs: {output name: the name of
    its tensor in the graph}; the input and output tensors are renamed after them."""
    schema, fb = _schema()
    model = fb.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1:
        raise ValueError(f"the converted graph has {len(graph.inputs)} inputs; the export signature has one")
    by_name = {graph.tensors[i].name.decode(): i for i in graph.outputs}

    def entry(name: str, index: int):
        graph.tensors[index].name = name
        tensor_map = schema.TensorMapT()
        tensor_map.name, tensor_map.tensorIndex = name, index
        return tensor_map

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = SIGNATURE_KEY, 0
    signature.inputs = [entry(INPUT_NAME, graph.inputs[0])]
    signature.outputs = [entry(name, by_name[tensor]) for name, tensor in outputs.items()]
    model.signatureDefs = [signature]
    return bytes(fb.convert_object_to_bytearray(model))


def embed_tflite_metadata(tflite: bytes, metadata: dict) -> bytes:
    """A copy of a .tflite flatbuffer carrying `metadata` (entry + appended kpose.json zip)."""
    schema, fb = _schema()
    payload = json.dumps(metadata, indent=1).encode()
    model = fb.read_model_from_bytearray(bytearray(tflite))
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() != METADATA_NAME] \
        if model.metadata else []
    buf = schema.BufferT()
    buf.data = np.frombuffer(payload, np.uint8)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    out = io.BytesIO(bytes(fb.convert_object_to_bytearray(model)))
    out.seek(0, io.SEEK_END)
    # zipfile appends an archive with absolute offsets after non-zip data, so Java's
    # ZipFile (and MetadataExtractor) can read it; the interpreter ignores trailing bytes.
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as z:
        z.writestr(ASSOCIATED_FILE, payload)
    return out.getvalue()


def read_tflite_metadata(model: str | Path | bytes) -> dict:
    """The kpose metadata of a .tflite file (path or bytes)."""
    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    schema, _ = _schema()
    root = schema.Model.GetRootAsModel(data, 0)
    for i in range(root.MetadataLength()):
        entry = root.Metadata(i)
        if entry.Name().decode() == METADATA_NAME:
            raw = root.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(raw).decode())
    where = model if isinstance(model, (str, Path)) else "the model bytes"
    raise ValueError(f"{where}: no '{METADATA_NAME}' metadata; export it with kpose.export")


def read_tflite_associated_file(model: str | Path | bytes, name: str = ASSOCIATED_FILE) -> dict:
    """The JSON associated file zipped into a .tflite (what a mobile app reads)."""
    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return json.loads(z.read(name).decode())
