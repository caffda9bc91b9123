"""Real, small BatchNorm implementations in NumPy, loaded as user backends.

They exercise the user-backend path (`--crossbn-backend-module`) and give the
error-bound model something known to judge: a float32 implementation with a
stable two-pass variance must match; the same with the one-pass
E[x^2]-E[x]^2 variance must deviate once |mu|/sigma is large. Three more
misbehave on purpose, on chosen seeds only, to test fault isolation:
they abort the process, hang, or raise.
"""

import os
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


class Faulty(_NumpyBackend):
    """seed 13: abort the process; 14: hang; 15: raise; else behave."""

    name = "numpy-faulty"

    def run(self, case, inputs, device):
        if case.seed == 13:
            os.abort()
        if case.seed == 14:
            time.sleep(3600)
        if case.seed == 15:
            raise RuntimeError("deliberate failure inside the framework")
        return _batchnorm(case, inputs, one_pass=False)


class NotInstalled(_NumpyBackend):
    """A backend whose framework is missing: every test records why."""

    name = "numpy-notinstalled"
    modules = ("crossbn_no_such_framework",)
    extra = "nothing"
