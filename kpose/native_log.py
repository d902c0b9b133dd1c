"""TensorFlow's C++ chatter kept off the terminal: lines its native code writes straight to
file descriptor 2 (absl logging, which TF_CPP_MIN_LOG_LEVEL does not reach) that say nothing
to a kpose user, e.g. the CUDA plugins' "Unable to register cuDNN factory" on every import
of the Linux wheel, or the converter's "Ignored output_format".

Only lines matching a known pattern are dropped; everything else the native code (or Python)
writes passes through, in order, also when the block raises or the process aborts.
Set KPOSE_NATIVE_LOG=1 to see every line.
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from typing import Iterator

# absl's notice before its first unconfigured message (at the import, again at a conversion).
_ABSL_PREAMBLE = r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
# What `import tensorflow` prints on a machine without a GPU (the wheel's CUDA plugins register
# twice) and what the TFLite converter prints for every conversion.
IMPORT_NOISE = re.compile(
    r"Unable to register cu(FFT|DNN|BLAS) factory|computation placer already registered|" + _ABSL_PREAMBLE)
CONVERTER_NOISE = re.compile(
    r"Ignored output_format|Ignored drop_control_dependency|Number of eligible GPUs \(core count"
    r"|fully_quantize: \d+, inference_type: \d+"
    r"|single_machine\.cc:\d+\] Starting new session|" + _ABSL_PREAMBLE)


# The filter runs in a child process fed by a pipe that stands in for fd 2: lines are passed on as
# they come, and if native code aborts the process (a failed CHECK, a CPU without the wheel's
# instruction set), the child still drains the pipe, so the message that says why is not lost.
_FILTER = ("import os, re, sys\n"
           "noise = re.compile(sys.argv[1])\n"
           "out = os.fdopen(1, 'wb', 0)\n"
           "for line in sys.stdin.buffer:\n"
           "    if not noise.search(line.decode('utf-8', 'replace')):\n"
           "        out.write(line)\n")


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern) -> Iterator[None]:
    """Within the block, lines written to fd 2 that match `noise` are dropped; the rest reach
    stderr as they are written."""
    if os.environ.get("KPOSE_NATIVE_LOG") == "1" or getattr(sys, "frozen", False):
        # (A frozen app's sys.executable is the app, not a Python to run the filter with.)
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (a detached process): nothing to filter
        yield
        return
    try:
        child = subprocess.Popen([sys.executable, "-S", "-E", "-c", _FILTER, noise.pattern],
                                 stdin=subprocess.PIPE, stdout=saved, stderr=saved)
    except OSError:  # no process may be started here: unfiltered
        os.close(saved)
        yield
        return
    sys.stderr.flush()
    os.dup2(child.stdin.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        child.stdin.close()  # the pipe's last writer: the child reads to the end and exits
        child.wait()
