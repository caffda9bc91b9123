"""Exact-enough NumPy reference for BatchNorm, one function per stage.

In the style of JAX's ``lax_reference.py``: plain NumPy, no framework code, every input converted
to float64 first (``ml_dtypes.bfloat16`` included), every result float64. "Exact enough": the
frameworks under test round at 2**-24 or worse; each stage here loses only a few float64
roundings (2**-53), about nine orders of magnitude below the tolerances the oracle judges with.

``channel_axis`` may be negative; every other axis is reduced (``n = x.size // C`` per channel).
NaN and Inf propagate per channel as IEEE arithmetic does. An empty batch (n = 0) gives NaN
statistics, empty ``x_hat``/``y``/``dx`` and zero ``dgamma``/``dbeta``.

Design notes: docs/internals/oracle-and-verdict.md.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "reduction_axes",
    "channel_count",
    "to_channel_shape",
    "batch_mean",
    "batch_var",
    "unbiased_var",
    "inverse_std",
    "normalize",
    "affine",
    "running_update",
    "cumulative_update",
    "train_forward",
    "eval_forward",
    "train_backward",
    "eval_backward",
]

# NaN/Inf are legitimate inputs whose IEEE propagation we *want*; silence the
# warnings NumPy would print for them.
_QUIET: dict[str, Any] = dict(invalid="ignore", divide="ignore", over="ignore")


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _axis(ndim: int, channel_axis: int) -> int:
    if not -ndim <= channel_axis < ndim:
        raise ValueError(f"channel_axis {channel_axis} out of range for ndim {ndim}")
    return channel_axis % ndim


# ---- Shape helpers ----


def reduction_axes(ndim: int, channel_axis: int) -> tuple[int, ...]:
    """All axes of an ``ndim``-array except the channel axis, ascending."""
    c = _axis(ndim, channel_axis)
    return tuple(a for a in range(ndim) if a != c)


def channel_count(shape, channel_axis: int) -> int:
    """n: the number of elements reduced into each channel's statistics."""
    shape = tuple(int(s) for s in shape)
    c = _axis(len(shape), channel_axis)
    return math.prod(s for i, s in enumerate(shape) if i != c)


def to_channel_shape(v, ndim: int, channel_axis: int) -> np.ndarray:
    """Reshape a per-channel vector ``(C,)`` so it broadcasts against x."""
    v = _f64(v)
    if v.ndim != 1:
        raise ValueError(f"per-channel vector must be 1-D, got shape {v.shape}")
    shape = [1] * ndim
    shape[_axis(ndim, channel_axis)] = v.shape[0]
    return v.reshape(shape)


# ---- Error-free transformations and the per-channel sum ----


def _two_sum(a, b):
    """Knuth's TwoSum: ``s + e == a + b`` exactly, ``s = fl(a + b)``."""
    s = a + b
    bp = s - a
    return s, (a - (s - bp)) + (b - bp)


def _two_prod(a, b):
    """Dekker's TwoProduct: ``p + e == a * b`` exactly (barring overflow)."""
    p = a * b
    c = 134217729.0  # 2**27 + 1, Veltkamp splitter
    ta, tb = c * a, c * b
    ah, bh = ta - (ta - a), tb - (tb - b)
    al, bl = a - ah, b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, np.where(np.isfinite(p), e, 0.0)  # overflow: keep p = +-inf


def _sum(*terms, channel_axis: int) -> np.ndarray:
    """Per-channel sum of every element of every term -> (C,), nearly exact.

    Pairwise summation, one vectorised TwoSum per tree level (no Python loop
    over elements), with all rounding errors added back at the end (Sum2 of
    Ogita, Rump & Oishi, pairwise).  Error <= 0.5 ulp + O(u**2 log(n)**2) *
    sum(|terms|); plain ``np.sum`` is only good to ~log2(n) * u * sum(|terms|),
    many ulps of a cancelling sum.  Non-finite plain sums are returned as is.
    """
    ax = _axis(terms[0].ndim, channel_axis)
    c = terms[0].shape[ax]
    v = np.concatenate([np.moveaxis(t, ax, 0).reshape(c, -1) for t in terms], axis=1)
    plain = np.sum(v, axis=1)
    if v.shape[1] == 0:
        return plain
    err = np.zeros(c)
    while v.shape[1] > 1:
        h = v.shape[1] // 2
        s, e = _two_sum(v[:, :h], v[:, h : 2 * h])
        err += np.sum(e, axis=1)
        if v.shape[1] % 2:  # odd count: fold the leftover column in exactly
            s[:, -1], e = _two_sum(s[:, -1], v[:, -1])
            err += e
        v = s
    return np.where(np.isfinite(plain), v[:, 0] + err, plain)


# ---- Statistics ----


def batch_mean(x, *, channel_axis: int = 1) -> np.ndarray:
    """Per-channel mean: ``m0 = sum(x) / n``, then one refinement step.

    The refinement ``m = m0 + sum(x - m0) / n`` recovers the two roundings
    of the first pass (of ``sum`` and of ``/ n``): ``x - m0`` is formed
    exactly with TwoSum and summed nearly exactly, so ``sum(x - m0) / n`` is
    the true ``mean - m0`` to relative O(u) and the final addition rounds
    once.  Result: within about half an ulp of the exact mean, with or
    without a large common offset and even when the sum cancels.

    The step is skipped where ``m0`` is not finite: a channel holding +Inf
    keeps mean +Inf (as a plain sum/n would) instead of ``Inf - Inf = NaN``.
    An empty batch (n = 0) has mean ``0/0 = NaN`` in every channel.
    """
    x = _f64(x)
    n = channel_count(x.shape, channel_axis)
    with np.errstate(**_QUIET):
        m0 = _sum(x, channel_axis=channel_axis) / n
        d, e = _two_sum(x, -to_channel_shape(m0, x.ndim, channel_axis))
        resid = _sum(d, e, channel_axis=channel_axis)
        return np.where(np.isfinite(m0), m0 + resid / n, m0)


def batch_var(x, *, channel_axis: int = 1, mean=None) -> np.ndarray:
    """Per-channel BIASED (population) variance, divisor n.

    Corrected two-pass algorithm (Chan, Golub & LeVeque 1983)::

        d = x - mean;  var = (sum(d**2) - sum(d)**2 / n) / n

    Working on deviations avoids the catastrophic cancellation of
    ``E[x**2] - E[x]**2``; the correction term removes the effect of an error
    in ``mean`` (exactly: ``sum(d**2)`` grows by ``n * err**2`` and
    ``sum(d)**2 / n`` is that amount).  Each deviation is kept exactly as
    ``dh + dl`` (TwoSum), its square as ``dh**2 + 2*dh*dl + dl**2`` with
    ``dh**2`` split exactly (TwoProduct), and everything inside the outer
    parentheses is one nearly exact sum, so essentially only that sum and
    the division by n round: within 2 ulps (typically 1).
    ``mean`` defaults to :func:`batch_mean`.  n = 0 gives ``0/0 = NaN``.
    """
    x = _f64(x)
    n = channel_count(x.shape, channel_axis)
    if mean is None:
        mean = batch_mean(x, channel_axis=channel_axis)
    with np.errstate(**_QUIET):
        dh, dl = _two_sum(x, -to_channel_shape(mean, x.ndim, channel_axis))
        ph, pl = _two_prod(dh, dh)
        s1 = _sum(dh, dl, channel_axis=channel_axis)
        corr = to_channel_shape(-(s1 * s1) / n, x.ndim, channel_axis)
        var = _sum(ph, pl, 2.0 * dh * dl, dl * dl, corr, channel_axis=channel_axis) / n
        # By Cauchy-Schwarz sum(d)**2 <= n*sum(d**2), so the exact value is
        # >= 0; only roundoff (e.g. all d equal) could push it a hair below
        # 0, and 0 is then closer to the truth.  np.maximum keeps NaN.
        return np.maximum(var, 0.0)


def unbiased_var(var, n: int) -> np.ndarray:
    """Bessel-corrected ``var * n / (n - 1)``; n == 1 gives inf (nan if var == 0),
    n == 0 the NaN of an empty batch's variance."""
    with np.errstate(**_QUIET):
        return _f64(var) * np.float64(n) / np.float64(n - 1)


def inverse_std(var, eps: float) -> np.ndarray:
    """``1 / sqrt(var + eps)`` -- eps INSIDE the square root.

    ``w = var + eps`` is kept exactly as ``wh + wl`` (TwoSum) and the
    estimate ``r = 1/sqrt(wh)`` (two roundings, ~1 ulp) gets one Newton step
    ``r += r * (1 - w*r**2) / 2`` whose residual is formed exactly with
    TwoProduct, so the result is the correctly rounded ``1/sqrt(w)`` up to
    ~u**2 and only ``var``'s own error (halved by the root) remains.
    """
    var = _f64(var)
    with np.errstate(**_QUIET):
        wh, wl = _two_sum(var, np.float64(eps))
        r = 1.0 / np.sqrt(wh)
        p, pe = _two_prod(r, r)  # r**2 = p + pe
        q, qe = _two_prod(wh, p)  # wh * p = q + qe, q ~ 1 so 1 - q is exact
        resid = (1.0 - q) - qe - wh * pe - wl * p
        out = r + r * resid / 2.0
        # w = +-0/inf/nan: keep plain IEEE (the step would turn inf into nan).
        return np.where(np.isfinite(out) & (wh > 0) & np.isfinite(wh), out, r)


# ---- Elementwise stages ----


def normalize(x, mean, invstd, *, channel_axis: int = 1) -> np.ndarray:
    """``x_hat = (x - mean) * invstd`` with per-channel mean and invstd.

    Error: one rounding each for ``-`` and ``*``, plus the inherited
    ``invstd * |err(mean)|`` and ``|x_hat| * relerr(invstd)``.
    """
    x = _f64(x)
    with np.errstate(**_QUIET):
        return (x - to_channel_shape(mean, x.ndim, channel_axis)) * to_channel_shape(invstd, x.ndim, channel_axis)


def affine(x_hat, gamma, beta, *, channel_axis: int = 1) -> np.ndarray:
    """``y = gamma * x_hat + beta``; ``None`` means gamma = 1, beta = 0."""
    y = _f64(x_hat).copy()
    with np.errstate(**_QUIET):
        if gamma is not None:
            y = y * to_channel_shape(gamma, y.ndim, channel_axis)
        if beta is not None:
            y = y + to_channel_shape(beta, y.ndim, channel_axis)
    return y


# ---- Running statistics ----


def running_update(running, batch_stat, momentum: float) -> np.ndarray:
    """Canonical EMA: ``momentum * running + (1 - momentum) * batch_stat``.

    ``momentum`` is the weight kept on the OLD value (Keras, Flax, ONNX).
    PyTorch's ``momentum`` is the weight on the NEW value; pass
    ``1 - torch_momentum``.  momentum 0 returns batch_stat and momentum 1
    returns running, exactly (for finite inputs).  The NaN statistics of an
    empty batch make the result NaN, whatever the momentum (IEEE: 0 * NaN is
    NaN): the canonical meaning of training on an empty batch.
    """
    m = np.float64(momentum)
    with np.errstate(**_QUIET):
        return m * _f64(running) + (1.0 - m) * _f64(batch_stat)


def cumulative_update(running, batch_stat, count: int) -> np.ndarray:
    """PyTorch ``momentum=None`` cumulative average.

    ``running + (batch_stat - running) / count`` where ``count`` is the number
    of batches seen INCLUDING this one, so applying it with count = 1..k to
    batch statistics b_1..b_k yields their plain average.  count == 1 returns
    ``batch_stat`` exactly (the old value has weight 0; the formula alone
    could lose it to cancellation when |running| >> |batch_stat|).
    """
    count = int(count)
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    running, batch_stat = _f64(running), _f64(batch_stat)
    if count == 1:
        return np.broadcast_to(batch_stat, np.broadcast_shapes(running.shape, batch_stat.shape)).copy()
    with np.errstate(**_QUIET):
        return running + (batch_stat - running) / np.float64(count)


# ---- Whole layer ----


def train_forward(x, gamma, beta, eps, *, channel_axis: int = 1) -> dict:
    """Training forward with the batch's own (biased) statistics.

    Keys: ``batch_mean``, ``batch_var``, ``invstd``, ``x_hat``, ``y``."""
    x = _f64(x)
    mean = batch_mean(x, channel_axis=channel_axis)
    var = batch_var(x, channel_axis=channel_axis, mean=mean)
    invstd = inverse_std(var, eps)
    x_hat = normalize(x, mean, invstd, channel_axis=channel_axis)
    y = affine(x_hat, gamma, beta, channel_axis=channel_axis)
    return {"batch_mean": mean, "batch_var": var, "invstd": invstd, "x_hat": x_hat, "y": y}


def eval_forward(x, mean, var, gamma, beta, eps, *, channel_axis: int = 1) -> dict:
    """Inference forward with GIVEN statistics.  Keys: ``invstd``, ``x_hat``, ``y``."""
    x = _f64(x)
    invstd = inverse_std(var, eps)
    x_hat = normalize(x, mean, invstd, channel_axis=channel_axis)
    y = affine(x_hat, gamma, beta, channel_axis=channel_axis)
    return {"invstd": invstd, "x_hat": x_hat, "y": y}


def _param_grads(dy, x_hat, channel_axis):
    """(dbeta, dgamma) = (sum(dy), sum(dy * x_hat)), products split exactly."""
    with np.errstate(**_QUIET):
        p, e = _two_prod(dy, x_hat)
        return (_sum(dy, channel_axis=channel_axis), _sum(p, e, channel_axis=channel_axis))


def train_backward(dy, x_hat, invstd, gamma, *, channel_axis: int = 1) -> dict:
    """Gradients of training-mode BatchNorm, THROUGH the batch statistics.

    Per channel, with sums over the n reduced elements::

        dbeta  = sum(dy)
        dgamma = sum(dy * x_hat)
        dx     = gamma * invstd / n * (n * dy - dbeta - x_hat * dgamma)

    The last line is the exact derivative of y = gamma*(x - mean(x)) /
    sqrt(var(x) + eps) + beta including the dependence of mean and (biased)
    var on x.  ``gamma=None`` means gamma = 1; dgamma/dbeta are still
    returned (gradients w.r.t. an implicit gamma = 1, beta = 0).  For an
    empty batch (n = 0) dx is empty and dgamma = dbeta = 0 exactly (sums over
    no elements), even though invstd is NaN: no element multiplies it.
    """
    dy, x_hat = _f64(dy), _f64(x_hat)
    nd = dy.ndim
    n = channel_count(dy.shape, channel_axis)
    dbeta, dgamma = _param_grads(dy, x_hat, channel_axis)
    g = np.ones_like(dbeta) if gamma is None else _f64(gamma)
    with np.errstate(**_QUIET):
        scale = g * _f64(invstd) / n
        dx = to_channel_shape(scale, nd, channel_axis) * (
            n * dy - to_channel_shape(dbeta, nd, channel_axis) - x_hat * to_channel_shape(dgamma, nd, channel_axis)
        )
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def eval_backward(dy, x_hat, invstd, gamma, *, channel_axis: int = 1) -> dict:
    """Gradients of inference-mode BatchNorm: statistics are constants.

    ``dx = dy * gamma * invstd``; dgamma and dbeta as in training mode.
    """
    dy, x_hat = _f64(dy), _f64(x_hat)
    dbeta, dgamma = _param_grads(dy, x_hat, channel_axis)
    g = np.ones_like(dbeta) if gamma is None else _f64(gamma)
    with np.errstate(**_QUIET):
        dx = dy * to_channel_shape(g * _f64(invstd), dy.ndim, channel_axis)
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}
