"""The float64 NumPy oracle of a model case: every layer's hidden state, every step.

The network runs layer by layer in float64 on the case's own (rounded) weights and inputs,
BatchNorm through `crossbn/oracle/` (train_forward, eval_forward, running_update between steps),
convolution and dense layers as float64 dot products. Hidden states come back as
{"<step>.<layer>": array} in canonical layout (NCHW, or (N, features)), with, per hidden state,
the `gain` and `local` numbers crossbn/verdict/network_metrics.py needs to tell an inconsistency
from rounding. Declared conventions are options, as in crossbn/oracle/expected.py:
`running_var="unbiased"` and `hyperparameters="float32"`.

Design notes: docs/internals/oracle-and-verdict.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from crossbn.oracle import batchnorm as ref
from crossbn.oracle.tolerance import rho
from crossbn.spec.network_case import ModelCase
from crossbn.spec.networks import INPUT, KERNEL, POOL


@dataclass
class OracleRun:
    states: dict[str, np.ndarray] = field(default_factory=dict)  # "<step>.<layer>" -> float64 canonical
    gains: dict[str, float] = field(default_factory=dict)  # "<step>.<layer>" -> mean-abs gain
    local: dict[str, float] = field(default_factory=dict)  # "<step>.<layer>" -> rounding / u


def conv2d(x, w, b=None) -> np.ndarray:
    """3x3, stride 1, zero padding 1, NCHW x OIHW -> NCHW, in float64."""
    p = KERNEL // 2
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (KERNEL, KERNEL), axis=(2, 3))  # N,C,H,W,kh,kw
    y = np.einsum("nchwij,ocij->nohw", win, np.asarray(w, np.float64), optimize=True)
    return y if b is None else y + np.asarray(b, np.float64)[None, :, None, None]


def maxpool(x) -> np.ndarray:
    n, c, h, w = x.shape
    h, w = h // POOL, w // POOL  # floor, as every framework's VALID pooling
    return x[:, :, : h * POOL, : w * POOL].reshape(n, c, h, POOL, w, POOL).max(axis=(3, 5))


def dense(x, w, b=None) -> np.ndarray:
    y = np.asarray(x, np.float64).reshape(x.shape[0], -1) @ np.asarray(w, np.float64).T
    return y if b is None else y + np.asarray(b, np.float64)


def _mean_abs_gain(w) -> float:
    """Largest mean|Δy| / mean|Δx| of a conv (OIHW) or dense ((out, in)) layer.

    Input element j of channel c (a dense feature is its own channel) reaches
    the outputs through Σ_o Σ_ij |w[o, c, i, j]| (each kernel tap once, fewer
    at the zero-padded border), so Σ|Δy| <= max_c col_c · Σ|Δx|; there are
    C/O times as many inputs per output element, hence (C/O) · max_c col_c.
    The largest ROW sum (the max-abs norm) is not a bound here: a deviation
    concentrated in the input with the largest column sum exceeds it (by 1.6x
    at the dense layers of these networks)."""
    a = np.abs(np.asarray(w, np.float64))
    col = a.sum(axis=0).reshape(a.shape[1], -1).sum(axis=1)
    return float(a.shape[1] / a.shape[0] * col.max())


def _bcast(v, ndim: int) -> np.ndarray:
    return ref.to_channel_shape(v, ndim, 1)


def forward(case: ModelCase, inputs: dict, running_var: str = "biased", hyperparameters: str = "exact") -> OracleRun:
    net = case.spec
    eps, momentum = case.eps, case.momentum
    if hyperparameters == "float32":  # the formats that store them as 32-bit floats
        eps, momentum = float(np.float32(eps)), float(np.float32(momentum))
    f64 = lambda name: np.asarray(inputs[name], np.float64)
    running = {bn: {s: f64(f"{bn}.{s}") for s in ("running_mean", "running_var")} for bn in net.batchnorms}
    run = OracleRun()
    for k, step in enumerate(case.steps):
        training = step != "eval"
        h = {INPUT: f64(f"x{k}")}
        for layer in net.layers:
            x = h[layer.inputs[0]]
            key = f"{step}.{layer.name}"
            if layer.op in ("conv", "dense"):
                w, b = f64(f"{layer.name}.weight"), f64(f"{layer.name}.bias")
                fn = conv2d if layer.op == "conv" else dense
                y = fn(x, w, b)
                fan_in = int(np.prod(w.shape[1:]))
                run.gains[key] = _mean_abs_gain(w)
                run.local[key] = (rho(fan_in) + 1) * float(np.mean(fn(np.abs(x), np.abs(w), np.abs(b))))
            elif layer.op == "bn":
                y = _batchnorm(
                    case, layer.name, x, f64, running[layer.name], training, eps, momentum, running_var, run, key
                )
            elif layer.op == "relu":
                y = np.maximum(x, 0.0)
                run.gains[key], run.local[key] = 1.0, 0.0
            elif layer.op == "maxpool":
                y = maxpool(x)
                run.gains[key], run.local[key] = float(POOL * POOL), 0.0
            else:  # add
                other = h[layer.inputs[1]]
                y = x + other
                run.gains[key], run.local[key] = 2.0, float(np.mean(np.abs(x) + np.abs(other)))
            h[layer.name] = y
            run.states[key] = y
    return run


def _batchnorm(case, name, x, f64, stats, training, eps, momentum, running_var, run, key):
    """One BatchNorm layer through crossbn/oracle/, updating `stats` in training."""
    gamma, beta = f64(f"{name}.gamma"), f64(f"{name}.beta")
    n = x.size // x.shape[1]
    if training:
        out = ref.train_forward(x, gamma, beta, eps, channel_axis=1)
        mean = out["batch_mean"]
        var = out["batch_var"]
        fed = ref.unbiased_var(var, n) if running_var == "unbiased" else var
        stats["running_mean"] = ref.running_update(stats["running_mean"], mean, momentum)
        stats["running_var"] = ref.running_update(stats["running_var"], fed, momentum)
        # statistics (rho), centring, invstd (sqrt, division: half the
        # variance's relative error), scale, shift, storage
        growth = 1.5 * rho(n) + 6
        xh = np.abs(out["x_hat"]).reshape(x.shape)
        axes = ref.reduction_axes(x.ndim, 1)
        # d(x_hat) = r*(e - mean(e)) - x_hat*r*mean(x_hat*e): three terms
        spread = 2.0 + xh.mean(axis=axes) * xh.max(axis=axes)
    else:
        mean, var = stats["running_mean"], stats["running_var"]
        out = ref.eval_forward(x, mean, var, gamma, beta, eps, channel_axis=1)
        growth = 6.0
        if case.train_steps:  # running statistics carry their reductions' and updates' rounding
            growth += 1.5 * rho(n) + 3 * case.train_steps
        spread = 1.0
    r = np.asarray(out["invstd"], np.float64)
    run.gains[key] = float(np.max(np.abs(gamma) * r * spread))
    magnitude = np.abs(_bcast(gamma * r, x.ndim)) * (np.abs(x) + np.abs(_bcast(mean, x.ndim)))
    run.local[key] = growth * float(np.mean(magnitude + np.abs(_bcast(beta, x.ndim))))
    return out["y"]
