"""The error-bound model: how far a correct implementation may stray.

There is no global rtol. For each observable element the model gives an absolute bound B on
|backend − exact| that a correct implementation computing in the case's dtype must meet;
compare.py reports error/B, so one number ranks findings across dtypes and shapes (ratio <= 1:
within rounding; > 1: deviation). `model_bounds` propagates first-order errors stage by stage
(batch statistics, inverse std, x̂, y, running statistics, gradients) from the unit roundoff of
the compute dtype (float32 for float16/bfloat16: `compute_roundoff`) and the growth of a sum of
n terms, `rho(n) = log2(n) + LAMBDA*sqrt(n)`. A sum that overflows the compute dtype makes the
bound infinite (the element is not judged). compare.py adds the output's own rounding and
multiplies by SAFETY = 2.

Design notes: docs/internals/oracle-and-verdict.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crossbn.oracle import batchnorm as ref
from crossbn.spec.dtypes import UNIT_ROUNDOFF, name_of, overflow_threshold

LAMBDA = 4.0
SAFETY = 2.0


def unit_roundoff(dtype) -> float:
    return UNIT_ROUNDOFF[name_of(dtype)]


def compute_dtype_of(dtype) -> str:
    """The dtype the computation is held to: float16/bfloat16 inputs are
    reduced and normalized in float32 (the documented practice of every
    framework crossbn covers; statistics over thousands of values with an
    8- or 11-bit significand are not a usable BatchNorm), everything else in
    its own dtype. Storage in the half dtype is charged separately."""
    name = name_of(dtype)
    return "float32" if name in ("float16", "bfloat16") else name


def compute_roundoff(dtype) -> float:
    """Unit roundoff of `compute_dtype_of(dtype)`."""
    return UNIT_ROUNDOFF[compute_dtype_of(dtype)]


def rho(n: int) -> float:
    return float(np.log2(max(n, 1)) + LAMBDA * np.sqrt(n))


def _invstd_error(v, dv, eps, u):
    s2 = v + eps
    ds2 = dv + u * s2
    with np.errstate(invalid="ignore", divide="ignore"):
        r = 1.0 / np.sqrt(s2)  # inf for v + eps == 0: the bound is then unbounded, as it should be
        lo = np.where(ds2 < s2, 1.0 / np.sqrt(np.maximum(s2 - ds2, 0.0)), np.inf)
        hi = 1.0 / np.sqrt(s2 + ds2)
        return np.maximum(lo - r, r - hi) + 2 * u * r


def _sum_abs(a, ax):
    return np.sum(np.abs(a), axis=ref.reduction_axes(a.ndim, ax))


def model_bounds(case, traces, compute_dtype: str | None = None) -> dict[str, np.ndarray]:
    """Absolute first-order error bounds, keyed like the expected observables
    (before output rounding and SAFETY, which compare.py applies).
    `compute_dtype` holds the computation to another precision than the
    case's (fingerprint.py: how far a float32 formulation of a float64 case
    may stray)."""
    u = unit_roundoff(compute_dtype) if compute_dtype else compute_roundoff(case.dtype)
    u_store = max(unit_roundoff(case.dtype), u)
    ax, n, r_n = case.channel_axis, case.reduction_size, rho(case.reduction_size)
    top = overflow_threshold(compute_dtype or compute_dtype_of(case.dtype))
    out: dict[str, np.ndarray] = {}
    d_running: Any = None  # (d mean, d var) of the running statistics so far
    if case.track_running_stats:
        d_running = (0.0, 0.0)  # the initial statistics are given exactly
    with np.errstate(invalid="ignore", over="ignore"):
        for t in traces:
            nd = t.x.ndim
            per_elem = lambda v: ref.to_channel_shape(v, nd, ax)  # noqa: E731
            mu, v = t.mean, t.var
            if t.training or not case.track_running_stats:
                A = _sum_abs(t.x, ax) / n
                dmu = r_n * u * A + u * np.abs(mu)
                dv = dmu**2 + (r_n + 3) * u * (v + dmu**2)
                # past the compute dtype's range no formula is bound (see "range")
                dmu = np.where(n * A < top, dmu, np.inf)
                dv = np.where((n * v < top) & np.isfinite(dmu), dv, np.inf)
            else:
                dmu, dv = d_running  # the running statistics, as stored (storage rounding included)
            dr = _invstd_error(v, dv, case.eps, u)
            g = np.ones_like(mu) if t.gamma is None else t.gamma
            b = np.zeros_like(mu) if t.beta is None else t.beta
            dxhat = (
                per_elem(t.invstd * dmu)
                + np.abs(t.x - per_elem(mu)) * per_elem(dr)
                + 2 * u * per_elem(t.invstd) * (np.abs(t.x) + per_elem(np.abs(mu)))
                + u * np.abs(t.x_hat)
            )
            s = t.step
            out[f"{s}.y"] = per_elem(np.abs(g)) * dxhat + u * (np.abs(per_elem(g) * t.x_hat) + per_elem(np.abs(b)))
            if t.training:
                out.update({f"{s}.batch_mean": dmu, f"{s}.batch_var": dv, f"{s}.invstd": dr})
            if t.running_kept:  # an empty batch under empty_batch="skip": the stored state, untouched
                c = len(t.running_before[0])
                d_running = tuple(np.broadcast_to(d, (c,)).astype(np.float64) for d in d_running)
                out[f"{s}.running_mean"], out[f"{s}.running_var"] = d_running
            elif t.running_after is not None:
                f = t.factor
                (old_m, old_v), (new_m, new_v) = t.running_before, t.running_after
                # the fed variance is v or v*n/(n-1): its error scales the same way
                dfed = t.var_fed_factor * dv + 2 * u * np.abs(t.var_fed)
                d_running = (
                    (1 - f) * d_running[0]
                    + f * dmu
                    + 3 * u * ((1 - f) * np.abs(old_m) + f * np.abs(mu))
                    + u_store * np.abs(new_m),
                    (1 - f) * d_running[1]
                    + f * dfed
                    + 3 * u * ((1 - f) * np.abs(old_v) + f * np.abs(t.var_fed))
                    + u_store * np.abs(new_v),
                )
                out[f"{s}.running_mean"], out[f"{s}.running_var"] = d_running
            if t.grads is not None:
                out.update(_backward_bounds(case, t, dxhat, dr, g, u, r_n, n, per_elem))
    return out


def _backward_bounds(case, t, dxhat, dr, g, u, r_n, n, per_elem) -> dict:
    ax, s = case.channel_axis, t.step
    dy, xh, r = t.dy, t.x_hat, t.invstd
    sum_dy = np.sum(dy, axis=ref.reduction_axes(dy.ndim, ax))
    sum_dyx = np.sum(dy * xh, axis=ref.reduction_axes(dy.ndim, ax))
    d_sum_dy = r_n * u * _sum_abs(dy, ax)
    d_sum_dyx = r_n * u * _sum_abs(dy * xh, ax) + _sum_abs(np.abs(dy) * dxhat, ax)
    out = {f"{s}.dbeta": d_sum_dy, f"{s}.dgamma": d_sum_dyx}
    dx = t.grads["dx"]
    if t.training or not case.track_running_stats:
        T = n * dy - per_elem(sum_dy) - xh * per_elem(sum_dyx)
        dT = (
            per_elem(d_sum_dy)
            + np.abs(xh) * per_elem(d_sum_dyx)
            + dxhat * per_elem(np.abs(sum_dyx))
            + 3 * u * (n * np.abs(dy) + per_elem(np.abs(sum_dy)) + np.abs(xh * per_elem(sum_dyx)))
        )
        out[f"{s}.dx"] = (
            per_elem(np.abs(g) * r / n) * dT + per_elem(np.abs(g) * dr / n) * np.abs(T) + 3 * u * np.abs(dx)
        )
    else:
        out[f"{s}.dx"] = np.abs(dy) * per_elem(np.abs(g) * dr) + 2 * u * np.abs(dx)
    return out
