"""A NumPy backend that talks the way frameworks do (tests/test_quiet.py).

Every case it runs writes, below Python (straight to fd 2), the log lines
TensorFlow, XLA and torch write, and through Python a warning and a
framework logger's warning; then one line that is no framework's log. On
seed 13 it writes its last words and aborts, as a failed C++ check does.
"""

import logging
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the worker imports this file by its path
from numpy_variants import TwoPass  # noqa: E402

FRAMEWORK_LINES = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    b"I0000 00:00:1796398685.970073    6776 port.cc:153] oneDNN custom operations are on.\n"
    b"E0000 00:00:1796398688.896659    6776 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n"
    b"W1204 15:38:17.930000 6920 torch/onnx/_registration.py:107] torchvision is not installed.\n"
    b"2024-01-12 10:00:00.123456: E external/local_xla/cuda_dnn.cc:9261] Unable to register cuDNN factory\n"
)
OWN_LINE = "noisy: a line that is no framework's log"
LAST_WORDS = "F0000 00:00:1796398688.896659    6776 noisy.cc:1] Check failed: the noisy backend aborts"


class Noisy(TwoPass):
    name = "numpy-noisy"

    def run(self, case, inputs, device):
        os.write(2, FRAMEWORK_LINES)
        warnings.warn("noisy: a framework's UserWarning", stacklevel=1)
        logging.getLogger("tensorflow").warning("noisy: a framework logger's warning")
        os.write(2, (OWN_LINE + "\n").encode())
        if case.seed == 13:
            os.write(2, (LAST_WORDS + "\n").encode())
            os.abort()
        return super().run(case, inputs, device)
