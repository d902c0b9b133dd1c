"""The single place where TensorFlow is imported.

tf_keras (Keras 2) is what tfmot's QAT, the TFLite converter, tensorflowjs and
tf2onnx are proven on, so the legacy-Keras switch must be set before the first
`import tensorflow` anywhere in the process. Every kpose module that needs
TensorFlow does `from kpose._tf import tf, keras`.
"""
import os

from kpose.native_log import IMPORT_NOISE, filtered_stderr

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

with filtered_stderr(IMPORT_NOISE):  # the wheel's CUDA plugins' start-up lines, not errors
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]
