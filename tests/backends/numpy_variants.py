"""Real, small BatchNorm implementations in NumPy, loaded as user backends.

They exercise the user-backend path (`--crossbn-backend-module`) and give the
error-bound model something known to judge: a float32 implementation with a
stable two-pass variance must match; the same with the one-pass
E[x^2]-E[x]^2 variance must deviate once |mu|/sigma is large. One more
misbehaves on purpose, on chosen seeds only, in every way a framework can
(FAULTS), to test fault isolation; and one has a stand-in second device so
that the device-against-CPU comparison can be tested without a GPU.
"""

import ctypes
import os
import sys
import time

import numpy as np

from crossbn.backends.base import Backend


def _batchnorm(case, inputs, *, one_pass: bool) -> dict:
    """Training steps then eval, forward only, in float32, canonical conventions."""
    f32 = np.float32
    ax = case.channel_axis
    axes = tuple(a for a in range(case.rank) if a != ax)
    shape = [1] * case.rank
    shape[ax] = case.channels
    gamma = inputs.get("gamma", np.ones(case.channels, f32)).astype(f32).reshape(shape)
    beta = inputs.get("beta", np.zeros(case.channels, f32)).astype(f32).reshape(shape)
    rm = inputs["running_mean"].astype(f32)
    rv = inputs["running_var"].astype(f32)
    m, eps = f32(case.momentum), f32(case.eps)
    out = {}
    for k, step in enumerate(case.steps):
        x = inputs[f"x{k}"].astype(f32)
        if step != "eval":
            mean = x.mean(axis=axes, dtype=f32)
            if one_pass:
                var = (x * x).mean(axis=axes, dtype=f32) - mean * mean
            else:
                var = ((x - mean.reshape(shape)) ** 2).mean(axis=axes, dtype=f32)
            rm = m * rm + (f32(1) - m) * mean
            rv = m * rv + (f32(1) - m) * var
            out[f"{step}.batch_mean"], out[f"{step}.batch_var"] = mean, var
            out[f"{step}.running_mean"], out[f"{step}.running_var"] = rm.copy(), rv.copy()
        else:
            mean, var = rm, rv
        y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma + beta
        out[f"{step}.y"] = y.astype(f32)
    return out


class _NumpyBackend(Backend):
    packages = ("numpy",)
    modules = ("numpy",)

    def supports(self, case):
        if case.dtype != "float32":
            return "float32 only"
        if case.cumulative or not case.track_running_stats:
            return "canonical momentum with running statistics only"
        return None

    def describe(self):
        return {"version": np.__version__, "devices": {"cpu": "numpy"}}


class TwoPass(_NumpyBackend):
    name = "numpy-twopass"

    def run(self, case, inputs, device):
        return _batchnorm(case, inputs, one_pass=False)


class OnePass(_NumpyBackend):
    name = "numpy-onepass"

    def run(self, case, inputs, device):
        return _batchnorm(case, inputs, one_pass=True)


# seed -> what numpy-faulty does instead of computing
FAULTS = {
    13: "abort",  # SIGABRT, as a failed C++ assertion does
    14: "hang",  # never replies
    15: "raise",  # a Python exception inside the framework
    16: "segfault",  # SIGSEGV: reads address 0
    17: "exit",  # sys.exit(3) inside the framework
    18: "hard-exit",  # os._exit(4): no cleanup, no exception
    19: "wrong-shape",  # y transposed
    20: "wrong-dtype",  # y in float64 for a float32 case
    21: "not-arrays",  # y as a list of strings
}


class Faulty(_NumpyBackend):
    """Misbehaves as FAULTS says on those seeds; otherwise a correct backend."""

    name = "numpy-faulty"

    def run(self, case, inputs, device):
        fault = FAULTS.get(case.seed)
        if fault == "abort":
            os.abort()
        if fault == "hang":
            time.sleep(3600)
        if fault == "raise":
            raise RuntimeError("deliberate failure inside the framework")
        if fault == "segfault":
            ctypes.string_at(0)
        if fault == "exit":
            sys.exit(3)
        if fault == "hard-exit":
            os._exit(4)
        out = _batchnorm(case, inputs, one_pass=False)
        if fault == "wrong-shape":
            out["train0.y"] = out["train0.y"].T.copy()
        if fault == "wrong-dtype":
            out["train0.y"] = out["train0.y"].astype(np.float64)
        if fault == "not-arrays":
            out["train0.y"] = ["not", "numbers"]
        return out


class TwoDevice(_NumpyBackend):
    """A stand-in for a framework with a second device: "cuda" here is NumPy
    again, with the one-pass variance, so that the device-against-CPU
    comparison sees a real difference at large |mu|/sigma. Only tests use it."""

    name = "numpy-twodevice"

    def describe(self):
        return {"version": np.__version__, "devices": {"cpu": "numpy", "cuda": "numpy one-pass stand-in"}}

    def run(self, case, inputs, device):
        return _batchnorm(case, inputs, one_pass=device == "cuda")


class NotInstalled(_NumpyBackend):
    """A backend whose framework is missing: every test records why."""

    name = "numpy-notinstalled"
    modules = ("crossbn_no_such_framework",)
    extra = "nothing"

    def run(self, case, inputs, device):  # reached only where that module exists (tests/test_side_by_side.py)
        return _batchnorm(case, inputs, one_pass=False)


class Littering(Faulty):
    """Leaves a temporary file behind on every case, as frameworks do (and
    then misbehaves as numpy-faulty does): the run must remove it."""

    name = "numpy-littering"

    def run(self, case, inputs, device):
        import tempfile

        fd, _ = tempfile.mkstemp(prefix="litter-")
        os.write(fd, b"left behind")
        os.close(fd)
        return super().run(case, inputs, device)
