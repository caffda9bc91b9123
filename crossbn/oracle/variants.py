"""Variant BatchNorm formulations seen in real implementations, in a chosen dtype.

The oracle (``batchnorm.py``) answers "what is the exact value"; this module answers "what would
an implementation that computes it *this way* return". Each function is one way of computing one
stage (mean; two-pass, one-pass or Welford variance; inverse std; normalize; affine; running
update), every operation done in float64 and rounded to ``dtype`` at once. Inputs and results are
float64 arrays holding ``dtype`` values; ``dtype`` is a NumPy dtype (``ml_dtypes.bfloat16`` for
bfloat16). Reductions are pairwise trees rounded at every level to their accumulator dtype ``acc``
(default: ``dtype``), so a variant matches a framework to within rounding noise, not bit for bit.
``crossbn/verdict/fingerprint.py`` combines them.

Design notes: docs/internals/oracle-and-verdict.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "rounder",
    "tree_sum",
    "sequential_sum",
    "reduce_sum",
    "mean",
    "var_two_pass",
    "var_one_pass",
    "var_welford",
    "inverse_std",
    "normalize",
    "affine",
    "running_update",
    "cumulative_update",
    "train_backward",
    "eval_backward",
]

_QUIET: dict[str, Any] = dict(invalid="ignore", divide="ignore", over="ignore")


def rounder(dtype):
    """r(a): round float64 values to ``dtype`` and back (Inf past its range)."""
    dt = np.dtype(dtype)
    if dt == np.float64:
        return lambda a: np.asarray(a, dtype=np.float64)

    def r(a):
        with np.errstate(**_QUIET):
            return np.asarray(a, dtype=np.float64).astype(dt).astype(np.float64)

    return r


def _channels_rows(x, channel_axis):
    """(C, n) view of x: one row per channel."""
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[channel_axis]
    return np.moveaxis(x, channel_axis, 0).reshape(c, -1)


def _broadcast(v, ndim, channel_axis):
    shape = [1] * ndim
    shape[channel_axis % ndim] = -1
    return np.asarray(v, dtype=np.float64).reshape(shape)


def sequential_sum(x, channel_axis, dtype):
    """Per-channel sum as one running total in memory order, every partial sum
    rounded to ``dtype``: what XLA's CPU reductions compute. A float32 sum of
    n terms strays up to ~n ulps this way, against ~log2(n) pairwise."""
    v = _channels_rows(x, channel_axis)
    if v.shape[1] == 0:
        return np.zeros(v.shape[0])
    dt = np.dtype(dtype)
    with np.errstate(**_QUIET):
        if dt in (np.float64, np.float32, np.float16):
            # NumPy's cumsum is a strict left-to-right sum in its dtype
            return np.cumsum(v.astype(dt), axis=1, dtype=dt)[:, -1].astype(np.float64)
        r = rounder(dtype)
        total = np.zeros(v.shape[0])
        for j in range(v.shape[1]):
            total = r(total + v[:, j])
        return total


def reduce_sum(x, channel_axis, dtype, order: str = "pairwise"):
    """Per-channel sum in the given order: "pairwise" or "sequential"."""
    if order == "sequential":
        return sequential_sum(x, channel_axis, dtype)
    return tree_sum(x, channel_axis, dtype)


def tree_sum(x, channel_axis, dtype):
    """Per-channel sum, pairwise, every partial sum rounded to ``dtype``."""
    r = rounder(dtype)
    v = _channels_rows(x, channel_axis)
    native = np.dtype(dtype) in (np.float32, np.float16)
    with np.errstate(**_QUIET):
        while v.shape[1] > 1:
            h = v.shape[1] // 2
            if native and v.dtype == np.float64 and v.shape[1] > 2:
                # After the first level every partial sum is a `dtype` value, and
                # NumPy's float32/float16 addition of two such values is the
                # correctly rounded sum, as rounding their exact float64 sum is:
                # the same bits, without two conversions per addition.
                s = r(v[:, :h] + v[:, h : 2 * h]).astype(dtype)
                if v.shape[1] % 2:
                    s[:, -1] = r(s[:, -1].astype(np.float64) + v[:, -1])
            elif v.dtype != np.float64:
                s = v[:, :h] + v[:, h : 2 * h]
                if v.shape[1] % 2:
                    s[:, -1] = s[:, -1] + v[:, -1]
            else:
                s = r(v[:, :h] + v[:, h : 2 * h])
                if v.shape[1] % 2:
                    s[:, -1] = r(s[:, -1] + v[:, -1])
            v = s
    v = v.astype(np.float64)
    return v[:, 0] if v.shape[1] else np.zeros(v.shape[0])


def _average(total, n, ra, order):
    """sum / n in the accumulator: a sequential (XLA) reduction multiplies by
    the rounded reciprocal 1/n, as XLA rewrites a division by a constant."""
    if order == "sequential" and n:
        return ra(total * ra(1.0 / n))
    return ra(total / n)


def mean(x, channel_axis, dtype, acc=None, order: str = "pairwise"):
    """sum(x) / n: the sum accumulated in `acc` (default `dtype`), divided
    in `acc` and rounded to `dtype` (a float32 sum of float16 terms may
    exceed float16's range; its mean does not)."""
    r, ra = rounder(dtype), rounder(acc or dtype)
    n = _channels_rows(x, channel_axis).shape[1]
    with np.errstate(**_QUIET):
        return r(_average(reduce_sum(x, channel_axis, acc or dtype, order), n, ra, order))


def var_two_pass(x, m, channel_axis, dtype, acc=None, order: str = "pairwise"):
    """sum((x - mean)**2) / n with the given (computed) mean; terms in
    `dtype`, the sum accumulated in `acc`."""
    r, ra = rounder(dtype), rounder(acc or dtype)
    x = np.asarray(x, dtype=np.float64)
    n = _channels_rows(x, channel_axis).shape[1]
    with np.errstate(**_QUIET):
        d = r(x - _broadcast(m, x.ndim, channel_axis))
        return r(_average(reduce_sum(r(d * d), channel_axis, acc or dtype, order), n, ra, order))


def var_one_pass(x, m, channel_axis, dtype, acc=None, order: str = "pairwise", clamp: bool = True):
    """E[x²] - E[x]², clamped at 0 (max(0, ·): Flax) or not (Keras 3 on
    PyTorch: a negative variance, and NaN downstream)."""
    r, ra = rounder(dtype), rounder(acc or dtype)
    x = np.asarray(x, dtype=np.float64)
    n = _channels_rows(x, channel_axis).shape[1]
    with np.errstate(**_QUIET):
        ex2 = r(_average(reduce_sum(r(x * x), channel_axis, acc or dtype, order), n, ra, order))
        v = r(ex2 - r(m * m))
        return np.maximum(v, 0.0) if clamp else v


def var_welford(x, channel_axis, dtype):
    """(mean, biased var) by Welford's algorithm merged pairwise (Chan, Golub &
    LeVeque): each element starts as (count 1, mean x, M2 0); two partial
    results (na, ma, Ma), (nb, mb, Mb) merge as
        delta = mb - ma;  mean = ma + delta * nb/n;  M2 = Ma + Mb + delta² * na*nb/n.
    No elements (an empty batch): count 0, so mean and M2/count are NaN.
    """
    r = rounder(dtype)
    m = _channels_rows(x, channel_axis).copy()
    if m.shape[1] == 0:  # nothing to merge: the state is (0, NaN, 0) and M2/0 is NaN
        nan = np.full(m.shape[0], np.nan)
        return nan, nan.copy()
    m2 = np.zeros_like(m)
    cnt = np.ones_like(m)
    with np.errstate(**_QUIET):
        while m.shape[1] > 1:
            h = m.shape[1] // 2
            na, nb = cnt[:, :h], cnt[:, h : 2 * h]
            ma, mb = m[:, :h], m[:, h : 2 * h]
            n = na + nb
            delta = r(mb - ma)
            new_m = r(ma + r(delta * r(nb / n)))
            new_m2 = r(r(m2[:, :h] + m2[:, h : 2 * h]) + r(r(delta * delta) * r(na * nb / n)))
            if m.shape[1] % 2:  # fold the leftover column into the last pair
                na, ma, mm2 = n[:, -1], new_m[:, -1], new_m2[:, -1]
                nb, mb = cnt[:, -1], m[:, -1]
                tot = na + nb
                delta = r(mb - ma)
                new_m[:, -1] = r(ma + r(delta * r(nb / tot)))
                new_m2[:, -1] = r(r(mm2 + m2[:, -1]) + r(r(delta * delta) * r(na * nb / tot)))
                n[:, -1] = tot
            m, m2, cnt = new_m, new_m2, n
        total = cnt[:, 0]
        return m[:, 0], r(m2[:, 0] / total)


def inverse_std(var, eps, dtype, *, eps_in_root: bool = True):
    """1/sqrt(var + eps), or 1/(sqrt(var) + eps) with eps outside the root."""
    r = rounder(dtype)
    with np.errstate(**_QUIET):
        if eps_in_root:
            return r(1.0 / r(np.sqrt(r(var + eps))))
        return r(1.0 / r(r(np.sqrt(var)) + eps))


def normalize(x, m, invstd, channel_axis, dtype, *, divide_by=None):
    """(x - mean) * invstd; with ``divide_by`` (the per-channel sqrt(var+eps)),
    (x - mean) / divide_by instead."""
    r = rounder(dtype)
    x = np.asarray(x, dtype=np.float64)
    b = lambda v: _broadcast(v, x.ndim, channel_axis)  # noqa: E731
    with np.errstate(**_QUIET):
        d = r(x - b(m))
        return r(d / b(divide_by)) if divide_by is not None else r(d * b(invstd))


def affine(x, x_hat, m, invstd, gamma, beta, channel_axis, dtype, *, folded: bool = False):
    """gamma * x_hat + beta, or the folded x * a + b (a = gamma * invstd,
    b = beta - mean * a), which never forms x_hat."""
    r = rounder(dtype)
    x = np.asarray(x, dtype=np.float64)
    b = lambda v: _broadcast(v, x.ndim, channel_axis)  # noqa: E731
    g = np.ones_like(np.asarray(m, dtype=np.float64)) if gamma is None else np.asarray(gamma, dtype=np.float64)
    be = np.zeros_like(g) if beta is None else np.asarray(beta, dtype=np.float64)
    with np.errstate(**_QUIET):
        if folded:
            a = r(g * invstd)
            shift = r(be - r(m * a))
            return r(r(x * b(a)) + b(shift))
        y = x_hat if gamma is None else r(x_hat * b(g))
        return y if beta is None else r(y + b(be))


def running_update(old, batch, momentum, dtype, *, weight_on: str = "old"):
    """EMA of a running statistic; ``weight_on`` says what ``momentum`` weighs."""
    r = rounder(dtype)
    keep = momentum if weight_on == "old" else 1.0 - momentum
    with np.errstate(**_QUIET):
        return r(r(r(keep) * old) + r(r(1.0 - keep) * batch))


def cumulative_update(old, batch, count, dtype):
    r = rounder(dtype)
    if count == 1:
        return np.asarray(batch, dtype=np.float64).copy()
    with np.errstate(**_QUIET):
        return r(old + r(r(batch - old) / count))


def train_backward(
    dy, x_hat, invstd, gamma, channel_axis, dtype, *, var_term: float | np.ndarray = 1.0, acc=None, order="pairwise"
):
    """dx = g*r/n * (n*dy - sum(dy) - k * x_hat * sum(dy*x_hat)), dgamma, dbeta.

    ``var_term`` k is the derivative of the formulation's invstd with respect
    to the biased variance, relative to the canonical one: 1 for
    1/sqrt(v+eps), n/(n-1) when the normalization uses the unbiased variance,
    (sqrt(v)+eps)/sqrt(v) when eps is outside the root."""
    r = rounder(dtype)
    dy, x_hat = np.asarray(dy, dtype=np.float64), np.asarray(x_hat, dtype=np.float64)
    nd = dy.ndim
    n = _channels_rows(dy, channel_axis).shape[1]
    b = lambda v: _broadcast(v, nd, channel_axis)  # noqa: E731
    with np.errstate(**_QUIET):
        dbeta = r(reduce_sum(dy, channel_axis, acc or dtype, order))
        dgamma = r(reduce_sum(r(dy * x_hat), channel_axis, acc or dtype, order))
        g = np.ones_like(dbeta) if gamma is None else np.asarray(gamma, dtype=np.float64)
        scale = r(r(g * invstd) / n)
        inner = r(r(r(n * dy) - b(dbeta)) - r(x_hat * b(r(np.asarray(var_term) * dgamma))))
        dx = r(b(scale) * inner)
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def eval_backward(dy, x_hat, invstd, gamma, channel_axis, dtype, acc=None, order="pairwise"):
    """Statistics are constants: dx = dy * gamma * invstd."""
    r = rounder(dtype)
    dy, x_hat = np.asarray(dy, dtype=np.float64), np.asarray(x_hat, dtype=np.float64)
    with np.errstate(**_QUIET):
        dbeta = r(reduce_sum(dy, channel_axis, acc or dtype, order))
        dgamma = r(reduce_sum(r(dy * x_hat), channel_axis, acc or dtype, order))
        g = np.ones_like(dbeta) if gamma is None else np.asarray(gamma, dtype=np.float64)
        dx = r(dy * _broadcast(r(g * invstd), dy.ndim, channel_axis))
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}
