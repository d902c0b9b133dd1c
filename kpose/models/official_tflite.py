"""Load the official EfficientPose TFLite releases into kpose's own model.

II and II_LITE are released as .tflite only. Their weights are read from the file's
flatbuffer (tensors and buffers; the graph is never run) and assigned by layer name:
each weight tensor is named after its Keras layer (`block2a_expand_conv_res1/kernel`,
`efficientnet-lite4/model/blocks_1/conv2d/Conv2D_0/convolution/ReadVariableOp`).

What the converter did to the weights, and how kpose takes them:
* float16 storage: read as float16, widened to float32 exactly;
* batch norms folded into the convolution before them (kernel * gamma / sqrt(var + eps),
  bias beta - mean * gamma / sqrt(var + eps)): kpose's model keeps its batch norms (it
  trains), so the convolution takes the folded kernel and the batch norm becomes the
  identity plus the folded bias (gamma 1, moving mean 0, moving variance 1 - epsilon,
  beta the bias), the same function;
* kernels in TFLite layout ([out, h, w, in]; depthwise [1, h, w, channels]).
The three upscaling transposed convolutions share one kernel in the file; it must be
kpose's fixed bilinear kernel (checked), and they have no bias.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np

from kpose._tf import keras
from kpose.models.efficientnet_stem import ESWISH_BETA
from kpose.models.efficientpose import INPUT_NORMALIZATION, VARIANTS, bilinear_upsampling_kernel, build_efficientpose
from kpose.models.official import (
    CONF_CONVS, TRAINING_ONLY, LOADABLE, permute_keypoints, official_info, variant_from_names,
)
from kpose.skeletons import MPII16, efficientpose_to_mpii


def _schema():
    # tf.lite's public namespace does not expose the flatbuffer schema; import it by path.
    return importlib.import_module("tensorflow.lite.python.schema_py_generated")


def _root(path: str | Path):
    """(file bytes, flatbuffer Model) of a .tflite file."""
    data = Path(path).read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier). {LOADABLE}")
    return data, _schema().Model.GetRootAsModel(data, 0)


def read_tflite_tensors(path: str | Path) -> tuple[dict[str, np.ndarray], list[str], list[tuple]]:
    """(constant tensors by name, float16 widened to float32; every tensor name; graph
    input shapes) of a .tflite file's main graph."""
    schema = _schema()
    data, model = _root(path)
    graph = model.Subgraphs(0)
    types = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.FLOAT16: np.float16,
             schema.TensorType.INT32: np.int32}
    constants, names = {}, []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        name = t.Name().decode()
        names.append(name)
        buf = model.Buffers(t.Buffer())
        if buf.Offset() > 1:  # large models keep buffers after the flatbuffer
            raw = data[buf.Offset():buf.Offset() + buf.Size()]
        elif buf.DataLength():
            raw = buf.DataAsNumpy().tobytes()
        else:
            continue  # an activation: no data
        if t.Type() not in types:
            continue
        shape = tuple(int(v) for v in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        constants[name] = np.frombuffer(raw, types[t.Type()]).reshape(shape).astype(
            np.float32 if t.Type() == schema.TensorType.FLOAT16 else types[t.Type()])
    inputs = [tuple(int(v) for v in graph.Tensors(graph.Inputs(k)).ShapeAsNumpy())
              for k in range(graph.InputsLength())]
    return constants, names, inputs


def is_official_tflite(path: str | Path) -> bool:
    """A .tflite file of an official EfficientPose release (not a kpose export); reads
    tensor names only."""
    p = Path(path)
    if p.suffix != ".tflite" or not p.is_file():
        return False
    try:
        _, model = _root(p)
        graph = model.Subgraphs(0)
        names = [graph.Tensors(i).Name().decode() for i in range(graph.TensorsLength())]
        variant = variant_from_names(names)
    except ValueError:
        return False
    # kpose exports name their input "image"; the releases keep the Keras input's name.
    return VARIANTS[variant]["input_name"] in names


def _layer_tensors(constants: dict, layer_name: str, source: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(kernel, bias) of a layer: its float constants of rank 4 and rank 1."""
    prefix = layer_name + "/"
    found = {k: v for k, v in constants.items() if k.startswith(prefix) and v.dtype == np.float32}
    kernels = [v for v in found.values() if v.ndim == 4]
    biases = [v for v in found.values() if v.ndim == 1]
    if len(kernels) > 1 or len(biases) > 1:
        raise ValueError(f"{source}: layer {layer_name!r} has {len(found)} weight tensors, expected a kernel "
                         f"and a bias: {sorted(found)}")
    return (kernels[0] if kernels else None), (biases[0] if biases else None)


def load_official_tflite(
    path: str,
    keypoint_order: str = "mpii16",
    training_outputs: bool = False,
    input_size: int | tuple | None = None,
) -> tuple[keras.Model, dict]:
    """Build kpose's EfficientPose for the official .tflite at `path` and assign its weights.

    Same arguments and result as `load_official_h5`: keypoint_order "mpii16" or
    "efficientpose_mpii"; training_outputs needs the pass-1/pass-2 heads (not in the
    Lite releases); input_size defaults to the file's input. ValueError naming the
    file and the layer on any missing or mismatched weight.
    """
    if keypoint_order not in ("mpii16", "efficientpose_mpii"):
        raise ValueError(f"keypoint_order must be 'mpii16' or 'efficientpose_mpii', got {keypoint_order!r}")
    source = os.path.basename(path)
    constants, names, inputs = read_tflite_tensors(path)
    try:
        variant = variant_from_names(names)
    except ValueError as e:
        raise ValueError(f"{path}: a TFLite model, {e}. {LOADABLE}") from None
    for name, value in constants.items():
        if "eswish/mul/" in name and value.ndim == 0 and value != np.float32(ESWISH_BETA):
            raise ValueError(f"{source}: E-swish beta {float(value)} in {name!r}; kpose's EfficientPose "
                             f"uses {ESWISH_BETA}")
    size = tuple(inputs[0][1:3]) if input_size is None else input_size
    model = build_efficientpose(variant, num_keypoints=16, input_size=size,
                                training_outputs=training_outputs, num_limbs=len(MPII16.limbs))
    perm = efficientpose_to_mpii()
    # The batch norm after each bias-free convolution, whose shift the file folded into it.
    norm_after = {bn.inbound_nodes[0].inbound_layers.name: bn for bn in model.layers
                  if isinstance(bn, keras.layers.BatchNormalization)}
    used, bilinear = set(), bilinear_upsampling_kernel(4, 16)
    for layer in model.layers:
        if not layer.weights or layer.name == INPUT_NORMALIZATION or \
                isinstance(layer, keras.layers.BatchNormalization):
            continue  # kpose's own normalisation; batch norms: set with their convolution
        kernel, bias = _layer_tensors(constants, layer.name, source)
        if isinstance(layer, keras.layers.Conv2DTranspose):
            # Kept as built (fixed); the file's shared kernel, if named after this layer, must agree.
            if kernel is not None and not np.allclose(kernel.transpose(1, 2, 0, 3), bilinear, atol=1e-3):
                raise ValueError(f"{source}: layer {layer.name!r} is not the bilinear upscaling kpose fixes")
            used.add(layer.name)
            continue
        if kernel is None or bias is None:
            raise ValueError(f"{source}: no weights (kernel and bias) for layer {layer.name!r} in the file")
        # TFLite [out, h, w, in] (depthwise [1, h, w, channels]) -> Keras [h, w, in, out].
        kernel = kernel.transpose(1, 2, 3, 0)
        arrays = {"kernel": kernel, "bias": bias}
        if keypoint_order == "mpii16" and layer.name in CONF_CONVS:
            arrays = permute_keypoints(layer.name, arrays, perm)
        want = tuple(layer.weights[0].shape)
        if arrays["kernel"].shape != want:
            raise ValueError(f"{source}: layer {layer.name!r} kernel has shape {arrays['kernel'].shape} in "
                             f"the file (as Keras), kpose expects {want}")
        if layer.use_bias:
            layer.set_weights([arrays["kernel"], arrays["bias"]])
        else:
            bn = norm_after.get(layer.name)
            if bn is None:
                raise ValueError(f"{source}: layer {layer.name!r} has a folded bias in the file but no "
                                 f"batch norm after it in kpose's model")
            layer.set_weights([arrays["kernel"]])
            ones = np.ones_like(arrays["bias"])
            bn.set_weights([ones, arrays["bias"], np.zeros_like(ones), ones - bn.epsilon])
        used.add(layer.name)
    file_layers = {n.rsplit("/", 1)[0] for n, v in constants.items() if v.dtype == np.float32 and v.ndim >= 1}
    unused = sorted(n for n in file_layers if not any(n == u or n.startswith(u + "/") for u in used))
    unexpected = [n for n in unused if not n.startswith(TRAINING_ONLY) and not n.startswith("upscaled_")]
    if unexpected:
        raise ValueError(f"{source}: weight tensors not matched by kpose's model: {unexpected[:5]}")
    return model, official_info(variant, size, keypoint_order, unused, source)
