"""Quiet by default: the frameworks' own log lines and warnings stay out of crossbn's output.

CROSSBN_VERBOSE=1 (what `crossbn run -v` and `crossbn conventions -v` set) shows them. A backend's worker process
calls `quiet_worker()` before its framework loads: Python warnings are ignored there (in a worker they are the
framework's or NumPy's), the frameworks' Python loggers show errors only, and its stderr passes through a filter
process that drops the frameworks' C++ log lines (`NOISE`) and passes every other line, a dying worker's last words
included: the filter outlives the worker and ends when the last writer has closed its end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

VERBOSE_ENV = "CROSSBN_VERBOSE"

# Whole lines the frameworks write to stderr themselves (C++ logging, below Python):
NOISE = re.compile(
    rb"(?:"
    # absl / glog (TensorFlow, XLA, JAX, ONNX Runtime; torch's logging formats like it):
    # I1204 15:38:17.930000 6920 file.cc:107] message; F (fatal) is kept: it is a crash's own message
    rb"[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]\n]+:\d+\] "
    # TensorFlow before absl: 2024-01-12 10:00:00.123456: E external/.../cuda_dnn.cc:9261] Unable to register ...
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] [^\]\n]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    # the second line of TensorFlow's cpu_feature_guard message
    rb"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags"
    rb")"
)
# Python loggers the frameworks write through (TensorFlow's "WARNING:tensorflow:..." retracing notes, JAX's
# "no GPU" note, absl-py's); errors still show
LOGGERS = ("tensorflow", "absl", "jax", "jaxlib", "keras", "tf_keras", "flax", "onnxscript", "onnx_ir")

# the filter process: stdin, line by line, to stdout (the worker's stderr as it was), NOISE dropped. It ignores
# SIGINT and SIGTERM: a Ctrl-C to the process group must not leave the worker writing into a closed pipe, and it
# ends anyway at EOF, when the worker (and every process it started) has gone.
_FILTER = """
import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
noise = re.compile(sys.argv[1].encode("latin-1"))
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    if not noise.match(line):
        out.write(line)
        out.flush()
"""


def verbose() -> bool:
    """True when CROSSBN_VERBOSE asks for the frameworks' own output."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_noise(line: str | bytes) -> bool:
    """Whether quiet mode drops this stderr line."""
    return NOISE.match(line.encode("utf-8", "replace") if isinstance(line, str) else line) is not None


def filter_stderr() -> None:
    """Send this process's stderr (fd 2, inherited by every process it starts) through the filter process."""
    sys.stderr.flush()
    read, write = os.pipe()
    try:
        subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _FILTER, NOISE.pattern.decode("latin-1")],
            stdin=read,
            stdout=2,
            stderr=2,
            close_fds=True,  # the filter holds no end of the execnet channel, so a dead worker is seen as dead
        )
    except OSError:
        os.close(write)  # no filter: the output stays as it was, nothing is lost
        return
    finally:
        os.close(read)
    os.dup2(write, 2)
    os.close(write)


def quiet_worker() -> None:
    """A backend's worker process, before it imports its framework: quiet unless CROSSBN_VERBOSE."""
    if verbose():
        return
    import logging
    import warnings

    warnings.simplefilter("ignore")
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # what TensorFlow and XLA skip, they do not even format
    filter_stderr()
