"""Deterministic inputs for a case.

Every array has its own stream, `numpy.random.default_rng([case.seed, k])`
with a fixed k per array name, so an array's bytes depend only on the case and
never on which arrays were drawn before it, on the worker or on the machine.
Values are drawn in float64 and rounded once (round-to-nearest) to the case
dtype; the oracle then reads those rounded values back in float64, so it judges
the framework on exactly the bytes the framework received.

Inputs travel to worker processes as `{name: array}`; see `wire.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from crossbn.oracle import batchnorm as ref
from crossbn.spec.case import Case
from crossbn.spec.dtypes import numpy_dtype

# Stream numbers: fixed forever, so adding an array never shifts another one.
X_STREAM = 100  # + step
DY_STREAM = 1000  # + step

# float16 overflows at 65504; "fp16_stress" puts values just below it so that
# a float16 accumulation of the mean or of squares overflows.
_FP16_STRESS_LOC = 3.0e4
_FP16_STRESS_SCALE = 1.0e4


@dataclass(frozen=True)
class Draw:
    """How one array is drawn: `Generator([seed, stream]).<method>(a, b, size)`, then
    clipped. The one description of the case's input distributions: `generate` draws
    with it and the repro scripts write it out (bugreport/script.py)."""

    stream: int
    method: str  # "normal" (mean, standard deviation) or "uniform" (low, high)
    a: float
    b: float
    clip: tuple[float, float] | None = None

    def sample(self, case: Case, size) -> np.ndarray:
        x = getattr(_rng(case, self.stream), self.method)(self.a, self.b, size=size)
        return x if self.clip is None else np.clip(x, *self.clip)


# The per-channel arrays: (C,)
PER_CHANNEL = {
    "gamma": Draw(1, "uniform", 0.5, 1.5),
    "beta": Draw(2, "normal", 0.0, 0.5),
    "running_mean": Draw(3, "normal", 0.0, 1.0),
    "running_var": Draw(4, "uniform", 0.5, 2.0),
}


def dy_draw(step: int) -> Draw:
    return Draw(DY_STREAM + step, "normal", 0.0, 1.0)


def x_draw(case: Case, step: int) -> tuple[Draw, float | None]:
    """The draw of a step's x, and channel 0's constant value (constant_channel) or None."""
    sigma, loc = case.scale, case.offset_ratio * case.scale
    if case.distribution == "near_eps":
        # variance of the batch ~ eps: the normalization is dominated by eps
        sigma = math.sqrt(case.eps) if case.eps > 0 else 1e-4
        loc = case.offset_ratio * sigma
    if case.distribution == "uniform":
        half = sigma * math.sqrt(3.0)  # same variance as the normal
        draw = Draw(X_STREAM + step, "uniform", loc - half, loc + half)
    elif case.distribution == "fp16_stress":
        draw = Draw(X_STREAM + step, "normal", _FP16_STRESS_LOC, _FP16_STRESS_SCALE, clip=(-60000.0, 60000.0))
    else:
        draw = Draw(X_STREAM + step, "normal", loc, sigma)
    return draw, ((loc if loc != 0 else sigma) if case.distribution == "constant_channel" else None)


def _rng(case: Case, stream: int) -> np.random.Generator:
    return np.random.default_rng([case.seed, stream])


def to_stored_layout(case: Case, logical: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) -> stored layout."""
    if case.channel_axis == 1:
        return logical
    return np.ascontiguousarray(np.moveaxis(logical, 1, -1))


def _draw_x(case: Case, step: int) -> np.ndarray:
    draw, constant = x_draw(case, step)
    x = draw.sample(case, case.shape)
    if constant is not None:
        x[:, 0] = constant  # zero variance in channel 0
    return x


def generate(case: Case) -> dict[str, np.ndarray]:
    """All inputs of `case`, keyed: x<step>, dy<step>, gamma, beta,
    running_mean, running_var (initial values). Arrays are in the case dtype
    and stored layout; per-channel arrays have shape (C,)."""
    dt = numpy_dtype(case.dtype)
    c = case.channels
    out: dict[str, np.ndarray] = {}
    for step in range(len(case.steps)):
        x = _draw_x(case, step)
        for value, s, index in case.specials:
            if s == step:
                x[index] = float(value)
        out[f"x{step}"] = to_stored_layout(case, x).astype(dt)
        dy = dy_draw(step).sample(case, case.shape)
        out[f"dy{step}"] = to_stored_layout(case, dy).astype(dt)
    if case.affine:
        out["gamma"] = PER_CHANNEL["gamma"].sample(case, c).astype(dt)
        out["beta"] = PER_CHANNEL["beta"].sample(case, c).astype(dt)
    if case.track_running_stats and case.running_stats == "data":
        # What a model trained on this data holds: the statistics of the last
        # batch, exact (the oracle's) and rounded once to the dtype.
        last = np.asarray(out[f"x{len(case.steps) - 1}"], dtype=np.float64)
        mean = ref.batch_mean(last, channel_axis=case.channel_axis)
        var = ref.batch_var(last, channel_axis=case.channel_axis, mean=mean)
        with np.errstate(over="ignore"):  # past the dtype's range the stored statistic is Inf
            out["running_mean"], out["running_var"] = mean.astype(dt), var.astype(dt)
    elif case.track_running_stats:
        # Non-default initial statistics, so eval after 0 steps and the
        # momentum-weighted old value are both visible in the outputs.
        out["running_mean"] = PER_CHANNEL["running_mean"].sample(case, c).astype(dt)
        out["running_var"] = PER_CHANNEL["running_var"].sample(case, c).astype(dt)
    return out


def summarize(inputs: dict[str, np.ndarray]) -> dict[str, dict]:
    """What the report shows of each input array: shape, dtype, range, mean,
    standard deviation (of the finite values, in float64) and how many
    values are NaN or infinite."""
    out = {}
    for name, arr in inputs.items():
        a = np.asarray(arr, dtype=np.float64)
        fin = a[np.isfinite(a)]
        stats = (
            dict(min=float(fin.min()), max=float(fin.max()), mean=float(fin.mean()), std=float(fin.std()))
            if fin.size
            else dict(min=None, max=None, mean=None, std=None)
        )
        out[name] = dict(
            shape=list(a.shape), dtype=np.asarray(arr).dtype.name, **stats, nonfinite=int(a.size - fin.size)
        )
    return out
