"""The per-channel fits localization reads a y or dx error's shape with: a
scale and an offset per channel (an inverse-std or mean error) against an
elementwise one (the normalization's own)."""

from __future__ import annotations

import numpy as np

from crossbn.oracle import batchnorm as ref
from crossbn.oracle.tolerance import unit_roundoff
from crossbn.spec.dtypes import name_of


def channel_fit(case, actual_y, expected_y, x_hat, gamma, bound) -> dict:
    """Fit (y - beta)/gamma = s * x_hat + t per channel (least squares).
    `structured` says the fitted s, t explain the error to within the bound:
    then the error is a per-channel scale (an inverse-std error) and/or a
    per-channel offset (a mean error), not an elementwise one."""
    ax = case.channel_axis
    axes = ref.reduction_axes(actual_y.ndim, ax)
    g = np.ones(case.channels) if gamma is None else np.asarray(gamma, dtype=np.float64)
    gb = ref.to_channel_shape(g, actual_y.ndim, ax)
    a = np.asarray(actual_y, dtype=np.float64)
    e = np.asarray(expected_y, dtype=np.float64)
    # a NaN or infinity where the oracle has the same one says nothing of a scale or an
    # offset: left out of the fit (a non-finite value anywhere else still breaks it)
    alike = ~np.isfinite(e) & ((a == e) | (np.isnan(a) & np.isnan(e)))
    if alike.any():
        a, e, x_hat = np.where(alike, 0.0, a), np.where(alike, 0.0, e), np.where(alike, 0.0, x_hat)
    with np.errstate(all="ignore"):
        da = (a - e) / gb  # error in x_hat units
        # the returned values are rounded at their own magnitude, which a scale
        # error moves away from the expected values' that the bound allows for
        room = np.broadcast_to(bound + unit_roundoff(name_of(np.asarray(actual_y).dtype)) * np.abs(a), a.shape)
        # least squares weighted by each element's room: a half-precision output
        # rounds its large values by far more than its small ones, and unweighted
        # those roundings pull the fit off where the room is small (y near 0)
        w = np.where(room > 0, (gb / np.where(room > 0, room, 1.0)) ** 2, 0.0)
        w = np.where(np.isfinite(w), w, 0.0)
        sw = w.sum(axis=axes, keepdims=True)
        mean_w = lambda v: np.where(sw > 0, (w * v).sum(axis=axes, keepdims=True) / sw, 0.0)  # noqa: E731
        xm, dm = mean_w(x_hat), mean_w(da)
        cov = (w * (x_hat - xm) * (da - dm)).sum(axis=axes, keepdims=True)
        vx = (w * (x_hat - xm) ** 2).sum(axis=axes, keepdims=True)
        slope = np.where(vx > 0, cov / vx, 0.0)
        offset = dm - slope * xm
        resid = np.abs(gb * (da - slope * x_hat - offset))
        ratio = np.where(resid == 0, 0.0, resid / room)
    if not np.all(np.isfinite(ratio)):
        return {
            "structured": False,
            "scale": float("nan"),
            "offset": float("nan"),
            "residual_ratio": float("inf"),
            "x_hat_max": float("nan"),
        }
    return {
        "structured": bool(ratio.max(initial=0.0) <= 1.0),
        "scale": float(np.abs(slope).max(initial=0.0)),
        "offset": float(np.abs(offset).max(initial=0.0)),
        "residual_ratio": float(ratio.max(initial=0.0)),
        "x_hat_max": float(np.abs(x_hat).max(initial=0.0)),
    }


# ---- the decision ---------------------------------------------------------------------------


def scale_fit(actual, expected, bound, channel_axis: int) -> bool:
    """True when actual = s * expected per channel (least squares) to within
    the bound: a per-channel scale error, as a wrong inverse std makes an
    eval step's dx = dy * gamma * invstd."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    axes = ref.reduction_axes(a.ndim, channel_axis)
    with np.errstate(all="ignore"):
        s = (a * e).sum(axis=axes, keepdims=True) / (e * e).sum(axis=axes, keepdims=True)
        resid = np.abs(a - np.where(np.isfinite(s), s, 1.0) * e)
        ratio = np.where(resid == 0, 0.0, resid / bound)
    return bool(np.all(np.isfinite(ratio)) and ratio.max(initial=0.0) <= 1.0)
