"""Per-layer inconsistency: CRADLE's δ and R, and which layers introduce it.

CRADLE (Pham et al., ICSE 2019) localizes an inconsistency between two
implementations of one network by tracking its hidden states:
  δ_L      the mean absolute difference of layer L's hidden state between the
           two implementations (here: backend vs the float64 oracle network,
           or backend vs backend)
  δ_pre    the largest δ among L's inputs (the network input has δ = 0; a
           residual add has two inputs)
  R_L      = (δ_L − δ_pre) / (δ_pre + 1e-7), the inconsistency-introduction
           rate: how much of L's inconsistency is new
CRADLE picks the introducing layers by thresholding R: it highlights, in
each localization map, the layers whose R exceeds the map's third quartile
(75th percentile). (The paper's own wording was not in the reference corpus
this module was written against; this is its method as recalled.) Here one
map is one step's forward pass.

The threshold is where a choice has to be made, and the quartile is not used
for the verdict, for two reasons measured on this suite: a quarter of every
map is above its third quartile, whether anything is wrong or not (in float32
every layer adds rounding, so a correct network would always have
"introducing" layers); and with ε = 1e-7, R cannot rank float64 layers at
all: a BN that computes a float64 case in float32 adds δ ≈ 7e-8 on δ_pre ≈
1e-16, R ≈ 0.7, below the R ≈ 1 of a dense layer that merely carries it
(Keras 3 on torch, conv_bn_relu_pool_dense: the quartile named the dense
layer). So each layer gets its own threshold from the error model instead:

  L introduces an inconsistency  <=>  R_L > R*_L = ((gain_L − 1)·δ_pre + τ_L) / (δ_pre + ε)
                                 <=>  δ_L > bound_L = gain_L · δ_pre + τ_L

i.e. L's hidden state is further from the other side than rounding alone and
a correct layer's propagation of its inputs' deviation can explain, with u
the unit roundoff of the case dtype, τ_L = k · SAFETY · u · local_L (k the
number of sides that round at u: the backend, plus the oracle in float64
cases, whose own dot products round at the same u; in float32 the float64
oracle's rounding is 2^-29 of the backend's), and gain and local from the
oracle (oracle.py):
  gain_L · δ_pre   what a CORRECT layer may make of its inputs' deviation: its
                   Lipschitz constant in mean-abs terms (conv/dense:
                   (fan-in channels / out) · the largest column sum Σ|w|,
                   oracle._mean_abs_gain; BatchNorm: |γ|·invstd, times
                   2 + mean|x̂|·max|x̂| in training, where the deviation also
                   moves the batch statistics; ReLU 1; 2x2 max pool 4; add 2)
  u · local_L      the layer's own rounding: its operations' error growth (a
                   sum of n terms: tolerance.rho(n) = log2 n + 4√n, as in the
                   BatchNorm suite's error model) times the magnitude that
                   rounding is relative to, averaged over the hidden state like
                   δ (Σ|w||x| + |b| for a dot product, |γ|·invstd·(|x| + |μ|) +
                   |β| for BatchNorm, |a| + |b| for add; ReLU and max pool are
                   exact)
  SAFETY = 2       tolerance.SAFETY, for the first-order model's dropped terms
No number in it is tuned to the data: only u, the layer's magnitudes and
weights, and the growth laws above. The bound is conservative: on the
results of the whole suite that match (every backend here), conv, dense and
BN layers sit at a median 0.003-0.005 of it (max 0.17, float32 and float64
alike), add, ReLU and max pool, whose bound is mostly their inputs' δ times
their gain, at medians 0.29-0.56 (max 0.78);
so a fault must add more than ~1e-5 (float32) of a layer's magnitude to be
seen here: smaller ones are the per-operation suite's job.
ratio_L = δ_L / bound_L is reported like the BatchNorm suite's error/bound.
Downstream of a real fault δ stays large but within gain · δ_pre, so the
layers that merely carry it are not flagged; the first flagged layer in
execution order is where the inconsistency enters. Each entry also records
`q3`, CRADLE's own highlight (R above the map's third quartile), for
comparison with the paper's method.

Backend against backend (`compare_backends`): the same map with both
implementations' rounding in the bound (k = 2, whatever the dtype).
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
