"""A backend that drifts between two runs, as a framework upgrade may: its
version string and an offset added to channel 0 of every output y come from
the environment (CROSSBN_DRIFT_VERSION, CROSSBN_DRIFT), read in the worker,
or from a module `crossbn_drift_release` (VERSION, DRIFT) installed in the
worker's interpreter: a "release" of this framework in another virtual
environment, for side-by-side runs (tests/test_side_by_side.py)."""

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from numpy_variants import TwoPass  # noqa: E402


def _release() -> tuple[str, float]:
    try:
        import crossbn_drift_release as r
    except ImportError:
        return os.environ.get("CROSSBN_DRIFT_VERSION", "1.0"), float(os.environ.get("CROSSBN_DRIFT", "0"))
    return r.VERSION, float(r.DRIFT)


class Drifting(TwoPass):
    name = "numpy-drifting"

    def describe(self):
        return {"version": _release()[0], "devices": {"cpu": "numpy"}}

    def run(self, case, inputs, device):
        out = super().run(case, inputs, device)
        drift = _release()[1]
        for k, v in out.items():
            if k.endswith(".y"):
                v = v.copy()
                v[:, 0] += np.float32(drift)  # channel 0 of a channels-first (N, C, ...) output
                out[k] = v
        return out
