"""TensorFlow's C++ chatter kept off the terminal: lines its native code writes straight to
file descriptor 2 (absl logging, which TF_CPP_MIN_LOG_LEVEL does not reach) that say nothing
to a kpose user, e.g. the CUDA plugins' "Unable to register cuDNN factory" on every import
of the Linux wheel, or the converter's "Ignored output_format".

Only lines matching a known pattern are dropped; everything else the native code (or Python)
wrote meanwhile is written to stderr afterwards, in order, also when the block raises.
Set KPOSE_NATIVE_LOG=1 to see every line.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator

# What `import tensorflow` prints on a machine without a GPU (the wheel's CUDA plugins register
# twice) and what the TFLite converter prints for every conversion.
IMPORT_NOISE = re.compile(
    r"Unable to register cu(FFT|DNN|BLAS) factory|computation placer already registered"
    r"|All log messages before absl::InitializeLog\(\) is called are written to STDERR")
CONVERTER_NOISE = re.compile(
    r"Ignored output_format|Ignored drop_control_dependency|Number of eligible GPUs \(core count"
    r"|fully_quantize: \d+, inference_type: \d+"
    r"|single_machine\.cc:\d+\] Starting new session"
    r"|All log messages before absl::InitializeLog\(\) is called are written to STDERR")


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern) -> Iterator[None]:
    """Within the block, lines written to fd 2 that match `noise` are dropped; the rest are
    written to stderr when it ends."""
    if os.environ.get("KPOSE_NATIVE_LOG") == "1":
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (a detached process): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as buf:
        sys.stderr.flush()
        os.dup2(buf.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            buf.seek(0)
            kept = [line for line in buf.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not noise.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
