"""Per-layer inconsistency: CRADLE's δ and R, and which layers introduce it.

As in CRADLE (Pham et al., ICSE 2019), two implementations of one network (a backend vs the
float64 oracle network, or backend vs backend) are compared by their hidden states: δ_L is the
mean absolute difference of layer L's hidden state, δ_pre the largest δ among L's inputs, and
R_L = (δ_L − δ_pre) / (δ_pre + 1e-7) the inconsistency-introduction rate. Instead of CRADLE's
third-quartile threshold on R, each layer gets its own threshold from the error model:

  L introduces an inconsistency  <=>  δ_L > bound_L = gain_L · δ_pre + τ_L
with gain and local from the oracle network and τ_L = k · SAFETY · u · local_L (k sides rounding at u).
ratio_L = δ_L / bound_L is reported like the BatchNorm suite's error/bound; the first flagged layer in
execution order is where the inconsistency enters. Each entry also records `q3`, CRADLE's own
highlight. `compare_backends`: backend against backend (k = 2).

Design notes: docs/internals/oracle-and-verdict.md.
"""

from __future__ import annotations

import math

import numpy as np

from crossbn.oracle.networks import OracleRun
from crossbn.oracle.tolerance import SAFETY as MODEL_SAFETY
from crossbn.spec.dtypes import UNIT_ROUNDOFF
from crossbn.spec.network_case import ModelCase
from crossbn.spec.networks import INPUT

EPS_R = 1e-7  # CRADLE's ε in R
SAFETY = MODEL_SAFETY  # see the module docstring
EXACT_OPS = ("relu", "maxpool")  # no rounding of their own


def delta(a, b) -> float:
    """CRADLE's δ: mean |a − b| in float64 (NaN/Inf propagate)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def rate(d: float, d_pre: float) -> float:
    """R = (δ − δ_pre) / (δ_pre + ε): inf where δ is first non-finite, NaN
    where the input already was (nothing new can be said)."""
    if not math.isfinite(d_pre):
        return math.nan
    if not math.isfinite(d):
        return math.inf
    return (d - d_pre) / (d_pre + EPS_R)


def third_quartile(rates) -> float:
    """75th percentile of the finite R values (-inf when there are none, so an
    infinite R is always above it)."""
    finite = [r for r in rates if math.isfinite(r)]
    return float(np.percentile(finite, 75)) if finite else -math.inf


def _judge(entries: dict[str, dict]) -> None:
    """Set `introduces` (R above the layer's threshold, i.e. δ beyond its
    bound) and CRADLE's `q3` highlight on one step's entries (one map)."""
    q3 = third_quartile(e["R"] for e in entries.values())
    for e in entries.values():
        d, d_pre = e["delta"], e["delta_pre"]
        e["R_threshold"] = (e["bound"] - d_pre) / (d_pre + EPS_R) if math.isfinite(d_pre) else math.nan
        e["introduces"] = bool(math.isfinite(d_pre) and (not math.isfinite(d) or d > e["bound"]))
        e["q3"] = bool(e["R"] > q3)


def layer_map(case: ModelCase, actual: dict, expected: dict, oracle: OracleRun, roundings: int | None = None) -> dict:
    """{step: {layer: {delta, delta_pre, R, bound, ratio, introduces, ...}}}
    for hidden states `actual` against `expected` (both "<step>.<layer>"
    dicts); `oracle` supplies the rounding bound, `roundings` how many of the
    two sides round at the case dtype's u (default: against the float64
    oracle, 2 in float64 cases and 1 otherwise; 2 between backends)."""
    net, u = case.spec, UNIT_ROUNDOFF[case.dtype]
    if roundings is None:
        roundings = 2 if case.dtype == "float64" else 1
    out: dict[str, dict] = {}
    for step in case.steps:
        deltas = {INPUT: 0.0}
        entries: dict[str, dict] = {}
        for layer in net.layers:
            key = f"{step}.{layer.name}"
            a, e = np.asarray(actual[key]), np.asarray(expected[key])
            d = delta(a, e)
            d_pre = max(deltas[p] for p in layer.inputs)
            deltas[layer.name] = d
            bound = oracle.gains[key] * d_pre + roundings * SAFETY * u * oracle.local[key]
            with np.errstate(invalid="ignore", divide="ignore"):
                diff = np.abs(a.astype(np.float64) - e.astype(np.float64))
            entries[layer.name] = {
                "delta": d,
                "delta_pre": d_pre,
                "R": rate(d, d_pre),
                "R_threshold": math.nan,
                "bound": bound,
                "ratio": d / bound if bound > 0 else (0.0 if d == 0 else math.inf),
                "introduces": False,
                "q3": False,
                "dtype": a.dtype.name,
                "shape": list(a.shape),
                "max_abs": float(np.max(diff)) if diff.size else 0.0,
            }
        _judge(entries)
        out[step] = entries
    return out


def introducing(layers: dict) -> list[str]:
    """ "<step>.<layer>" of every introducing layer, in step and execution order."""
    return [f"{step}.{name}" for step, entries in layers.items() for name, e in entries.items() if e["introduces"]]


def worst(layers: dict, case: ModelCase) -> tuple[str, dict] | None:
    """The layer to name first: the introducing layer furthest beyond its
    bound (largest δ / bound), else the computing layer closest to it. ReLU
    and max pool are passed over then: they are exact, their bound is only
    their inputs' δ times their gain, and a ratio near 1 there says nothing."""
    flat = [(f"{s}.{n}", e) for s, entries in layers.items() for n, e in entries.items()]
    if not flat:
        return None
    hits = [f for f in flat if f[1]["introduces"]]
    computing = [f for f in flat if case.spec.layer(f[0].split(".")[1]).op not in EXACT_OPS]
    return max(hits or computing or flat, key=lambda f: _num(f[1]["ratio"]))


def _num(x: float) -> float:
    return -math.inf if math.isnan(x) else x


def compare_backends(case: ModelCase, a: dict, b: dict, inputs: dict | None = None) -> dict:
    """δ, R and introducing layers between two backends' hidden states (same
    case, same inputs), both sides charged their rounding."""
    from crossbn.oracle import network_inputs as inputs_mod
    from crossbn.oracle.networks import forward

    oracle = forward(case, inputs if inputs is not None else inputs_mod.generate(case))
    return layer_map(case, a, b, oracle, roundings=2)
