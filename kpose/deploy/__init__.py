"""Deployment: export a PoseModel to TFLite (fp32/fp16/int8/QAT-int8), ONNX and TF.js,
each self-describing (kpose metadata inside) and checked against the Keras model.

    import kpose
    model = kpose.load("runs/<run>")
    kpose.export(model, "tflite", precision="int8")         # -> Path of the .tflite
    report = kpose.deploy.export_all(model, "exported/")    # every format + parity report
"""
from kpose.deploy.exporter import FORMATS, PRECISIONS, export, export_all
from kpose.deploy.runtime import load, load_exported

__all__ = ["FORMATS", "PRECISIONS", "export", "export_all", "load", "load_exported"]
