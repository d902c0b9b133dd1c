"""int8 with the layers int8 damages most kept in float (`export(..., float_layers=N)`)."""
from __future__ import annotations

import numpy as np
import pytest

import kpose
from kpose.deploy import graph, metadata, tflite
from kpose.deploy.exporter import export
from kpose.deploy.runtime import load_exported
from kpose.deploy.samples import crops_from, model_inputs
from kpose.training import untrained_model

from conftest import no_official_init


def _coco(shared, split):
    coco = shared / "data" / "coco_mini"
    return f"coco:{coco}/annotations/person_keypoints_{split}2017.json:{coco}/{split}2017"


def test_float_layers_keep_the_most_damaged_layers_in_float(shared, tmp_path):
    """Official RT_LITE, stride-8 maps: the two layers sensitive_layers ranks first stay float
    (and only they), the file is still GPU-delegate clean and describes them in its metadata,
    and its keypoints on real crops are closer to the float model's than full int8's."""
    model = kpose.load(shared / "peers" / "efficientpose" / "EfficientPoseRT_LITE.h5")
    det = graph.with_heatmaps(model, "detection")
    calib = model_inputs(det, _coco(shared, "train"), 16, split="train")
    mixed = export(model, "tflite", "int8", tmp_path, calibration=calib, heatmaps="detection", float_layers=2)
    full = export(model, "tflite", "int8", tmp_path, calibration=calib, heatmaps="detection")
    assert mixed.name.endswith("_det_int8_float2.tflite") and full.name.endswith("_det_int8.tflite")

    meta = metadata.read_tflite_metadata(mixed)
    int8_net = graph.export_network(det, "int8", "tflite", calib)
    assert meta["float_layers"] == tflite.sensitive_layers(graph.export_function(det, int8_net), calib)[:2]
    assert meta["precision"] == "int8" and "float_layers" not in metadata.read_tflite_metadata(full)
    computing = tflite.float_compute_ops(mixed)
    assert len(computing) == 2, computing
    assert tflite.float_ops(full) == []
    ok, report = tflite.gpu_compatibility(mixed)
    assert ok, report
    assert not set(tflite.op_names(mixed)) & tflite.FORBIDDEN_OPS

    crops = crops_from(_coco(shared, "val"), model.input_size, 16, split="val", padding=model.crop_padding)
    want = model.codec.batch_decode(model.heatmaps(crops))
    found = want[..., 2] >= 0.2

    def median_px(path):
        exported = load_exported(path)
        got = exported.codec.batch_decode(exported.heatmaps(crops))
        return float(np.median(np.linalg.norm(got[..., :2] - want[..., :2], axis=-1)[found]))

    assert median_px(mixed) < median_px(full)


def test_float_layers_refuse_what_they_cannot_do(tmp_path):
    model = untrained_model("efficientpose_rt", {"model.input_size": [64, 64], **no_official_init()})
    calib = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="float_layers keeps layers of a tflite int8 model in float; tflite fp16"):
        export(model, "tflite", "fp16", tmp_path, float_layers=2)
    with pytest.raises(ValueError, match="float_layers keeps layers of a tflite int8 model in float; onnx"):
        export(model, "onnx", "fp32", tmp_path, float_layers=2)
    with pytest.raises(ValueError, match="float_layers must be >= 0"):
        export(model, "tflite", "int8", tmp_path, calibration=calib, float_layers=-1)
    assert not list(tmp_path.iterdir())  # nothing written
    with pytest.raises(ValueError, match="1 names given, 0 layers compute in float"):
        tflite.convert(graph.export_function(model), "int8", calib, float_layers=["no/such/layer"])
