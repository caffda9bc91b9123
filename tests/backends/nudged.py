"""A correct NumPy BatchNorm whose y moves by one unit in the last place
where its worker's environment says so (CROSSBN_TEST_NUDGE=1): the same
backend, case and inputs, one output bit apart (tests/test_cache.py)."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the worker imports this file by its path
from planted import Planted  # noqa: E402


class Nudged(Planted):
    name = "planted-nudged"

    def run(self, case, inputs, device):
        out = super().run(case, inputs, device)
        if os.environ.get("CROSSBN_TEST_NUDGE") == "1":
            y = out["train0.y"].copy()
            y.flat[0] = np.nextafter(y.flat[0], np.inf, dtype=y.dtype)
            out["train0.y"] = y
        return out
