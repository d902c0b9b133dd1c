"""TensorFlow's native start-up and converter chatter is kept off stderr; everything else is not."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from kpose.native_log import filtered_stderr

NOISE = re.compile(r"registered twice")


def test_only_matching_lines_are_dropped_in_order_even_when_the_block_raises(capfd):
    with filtered_stderr(NOISE):
        os.write(2, b"plugin registered twice\na real warning\n")
        os.write(2, b"registered twice again\nlast words")
    assert capfd.readouterr().err == "a real warning\nlast words"
    with pytest.raises(RuntimeError, match="boom"):
        with filtered_stderr(NOISE):
            os.write(2, b"why it failed\nregistered twice\n")
            raise RuntimeError("boom")
    assert capfd.readouterr().err == "why it failed\n"


def test_an_abort_inside_the_block_still_shows_why():
    # A failed CHECK in native code kills the process at once: what it wrote must not be lost.
    code = ("import os\nfrom kpose.native_log import filtered_stderr, IMPORT_NOISE\n"
            "with filtered_stderr(IMPORT_NOISE):\n"
            "    os.write(2, b'computation placer already registered\\nF0000 Check failed: the reason\\n')\n"
            "    os.abort()\n")
    env = {k: v for k, v in os.environ.items() if k != "KPOSE_NATIVE_LOG"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Check failed: the reason" in done.stderr, done.stderr
    assert "computation placer" not in done.stderr


def test_kpose_native_log_shows_every_line(capfd, monkeypatch):
    monkeypatch.setenv("KPOSE_NATIVE_LOG", "1")
    with filtered_stderr(NOISE):
        os.write(2, b"plugin registered twice\n")
    assert capfd.readouterr().err == "plugin registered twice\n"


def test_import_and_conversion_print_no_chatter(tmp_path, capfd):
    # A fresh process: the wheel's CUDA plugins print their lines once, at the first import.
    env = {k: v for k, v in os.environ.items() if k != "KPOSE_NATIVE_LOG"}
    err = subprocess.run([sys.executable, "-c", "import kpose._tf"], env=env, capture_output=True,
                         text=True, check=True).stderr
    for line in ("Unable to register cuDNN factory", "computation placer already registered",
                 "All log messages before absl::InitializeLog"):
        assert line not in err, err

    # Every export converts through tflite.convert; a one-convolution function shows the
    # converter's lines as a recipe's network does (this test: 19 s instead of 28 s).
    from kpose._tf import tf
    from kpose.deploy import tflite

    kernel = tf.constant(np.ones((3, 3, 3, 4), np.float32))
    serve = tf.function(lambda image: {"heatmaps": tf.nn.conv2d(image, kernel, 1, "SAME")},
                        input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32, name="image")])
    capfd.readouterr()
    assert tflite.convert(serve, "fp32")
    err = capfd.readouterr().err
    assert "Ignored output_format" not in err and "Starting new session" not in err, err
