"""Targeted runs and what each one shows about a backend's conventions.

A probe is a small case whose inputs make one convention show in the outputs as a number:

  train          momentum direction and biased/unbiased running variance (and float32 momentum)
  eps            the eps used: a clamp, or a float32 eps in float64
  variance       one-pass, two-pass or Welford variance (a float32 mean 100 sigma from zero)
  reduce-float16 / reduce-bfloat16   the accumulator dtype of half-precision reductions
  single-value   one training step on one value per channel
  frozen         which statistics a frozen layer normalizes with and updates, and its gradients
  eps0-zero-var  eps 0 on constant channels: NaN (IEEE) or beta (a clamp or a guard)

Each probe lists its candidate cases (dtype, shape) in order of preference; the first one the
backend supports runs. `facts(...)` turns the outputs into the numbers the conventions are read
from. Design notes: docs/internals/oracle-and-verdict.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from crossbn.oracle import inputs as inputs_mod
from crossbn.oracle.formulation import Formulation
from crossbn.spec.case import Case
from crossbn.spec.dtypes import numpy_dtype
from crossbn.verdict.fingerprint import rank_formulations

MOMENTUM = 0.1
EPS_PROBE = 1.1e-10
# The constant channel values of the eps=0 probe: few significant bits, so
# n copies sum exactly and the variance is exactly 0 in every dtype.
CONSTANTS = (1.5, -0.5, 2.0)


@dataclasses.dataclass(frozen=True)
class Probe:
    name: str
    purpose: str
    cases: tuple[Case, ...]  # candidates, first supported runs

    def choose(self, backend) -> tuple[Case | None, str]:
        """The first candidate case the backend runs, or None and why not."""
        reasons = []
        for case in self.cases:
            why = backend.supports(case) if backend.applies(case) else "sets another backend's switches"
            if why is None:
                return case, ""
            reasons.append(why)
        return None, "; ".join(dict.fromkeys(reasons))


def _cases(dtypes, shapes, **fields) -> tuple[Case, ...]:
    """Every (dtype, shape) candidate, in order: float64 first where the
    probe reads more from it; rank 2 first, with a rank-4 fallback for
    backends that run only NCHW-like inputs (tf-keras' fused path)."""
    return tuple(Case(suite="conventions", dtype=d, shape=s, **fields) for d in dtypes for s in shapes)


PROBES = (
    Probe(
        "train",
        "running statistics after one step from (0, 0): momentum direction, Bessel's correction, momentum precision",
        _cases(
            ("float64", "float32"),
            ((8, 3), (2, 3, 2, 2)),
            group="train",
            momentum=MOMENTUM,
            offset_ratio=2.0,
            train_steps=1,
            eval_step=False,
            gradients=False,
            seed=11,
        ),
    ),
    Probe(
        "eps",
        "eval with zero running variance: y = x / sqrt(eps used)",
        _cases(
            ("float64", "float32"),
            ((8, 3), (2, 3, 2, 2)),
            group="eps",
            eps=EPS_PROBE,
            train_steps=0,
            eval_step=True,
            gradients=False,
            seed=12,
        ),
    ),
    Probe(
        "variance",
        "a float32 batch 100 standard deviations from zero: the variance algorithm",
        _cases(
            ("float32",),
            ((16, 3, 8, 8),),
            group="variance",
            offset_ratio=100.0,
            momentum=MOMENTUM,
            train_steps=1,
            eval_step=False,
            gradients=False,
            seed=13,
        ),
    ),
    Probe(
        "reduce-float16",
        "4096 float16 values per channel around 32: the accumulator dtype",
        _cases(
            ("float16",),
            ((16, 3, 16, 16),),
            group="reduce",
            offset_ratio=32.0,
            momentum=MOMENTUM,
            train_steps=1,
            eval_step=False,
            gradients=False,
            seed=14,
        ),
    ),
    Probe(
        "reduce-bfloat16",
        "4096 bfloat16 values per channel around 32: the accumulator dtype",
        _cases(
            ("bfloat16",),
            ((16, 3, 16, 16),),
            group="reduce",
            offset_ratio=32.0,
            momentum=MOMENTUM,
            train_steps=1,
            eval_step=False,
            gradients=False,
            seed=14,
        ),
    ),
    Probe(
        "single-value",
        "a training step on one value per channel",
        _cases(
            ("float32",),
            ((1, 3), (1, 3, 1, 1)),
            group="single",
            momentum=MOMENTUM,
            train_steps=1,
            eval_step=False,
            gradients=False,
            seed=15,
        ),
    ),
    Probe(
        "frozen",
        "a training step of a frozen layer: the statistics it normalizes with, whether it updates the running ones",
        _cases(
            ("float64", "float32"),
            ((8, 3), (2, 3, 2, 2)),
            group="frozen",
            frozen=True,
            momentum=MOMENTUM,
            offset_ratio=2.0,
            train_steps=1,
            eval_step=False,
            gradients=True,
            seed=17,
        ),
    ),
    Probe(
        "eps0-zero-var",
        "a training step with eps 0 on constant channels",
        _cases(
            ("float32",),
            ((8, 3), (2, 3, 2, 2)),
            group="eps0",
            eps=0.0,
            momentum=MOMENTUM,
            train_steps=1,
            eval_step=False,
            gradients=False,
            seed=16,
        ),
    ),
)
BY_NAME = {p.name: p for p in PROBES}


# ---- inputs -------------------------------------------------------------------------------------


def _per_channel(case: Case, values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).astype(numpy_dtype(case.dtype))


def inputs_for(probe: str, case: Case) -> dict:
    """The probe's inputs: the case's seeded ones with what the probe fixes."""
    inputs = inputs_mod.generate(case)
    c, dt = case.channels, numpy_dtype(case.dtype)
    if probe == "train":
        inputs["running_mean"] = np.zeros(c, dt)
        inputs["running_var"] = np.zeros(c, dt)
    elif probe == "eps":
        inputs.update(
            running_mean=np.zeros(c, dt), running_var=np.zeros(c, dt), gamma=np.ones(c, dt), beta=np.zeros(c, dt)
        )
    elif probe == "eps0-zero-var":
        constant = np.empty(case.shape)
        for ch in range(c):
            constant[:, ch] = CONSTANTS[ch % len(CONSTANTS)]
        inputs["x0"] = inputs_mod.to_stored_layout(case, constant).astype(dt)
    return inputs


# ---- facts ----------------------------------------------------------------------------------------


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _rows(case: Case, a) -> np.ndarray:
    """(C, n): one row per channel of a stored-layout array."""
    return np.moveaxis(_f64(a), case.channel_axis, 0).reshape(case.channels, -1)


def train_facts(case: Case, inputs: dict, out: dict) -> dict:
    if "train0.running_mean" not in out or "train0.running_var" not in out:
        return {"missing": "the backend returned no running statistics"}
    x = _rows(case, inputs["x0"])
    mean, var = x.mean(axis=1), x.var(axis=1)
    rm, rv = _f64(out["train0.running_mean"]), _f64(out["train0.running_var"])
    with np.errstate(all="ignore"):
        kept = 1.0 - rm / mean  # weight kept on the old (zero) running value
        correction = rv * mean / (rm * var)  # the factor on the biased variance fed in
    return {
        "kept_on_old": [float(v) for v in kept],
        "var_factor": [float(v) for v in correction],
        "n": case.reduction_size,
    }


def eps_facts(case: Case, inputs: dict, out: dict) -> dict:
    if "eval.y" not in out:
        return {"missing": "the backend returned no eval output"}
    x, y = _f64(inputs["x0"]).ravel(), _f64(out["eval.y"]).ravel()
    usable = (np.abs(x) > 0.1) & np.isfinite(y) & (y != 0)
    if not usable.any():
        if np.isinf(y[np.abs(x) > 0.1]).all():  # x / sqrt(0): eps was lost entirely
            return {"eps_given": case.eps, "eps_used": 0.0, "spread": 0.0, "elements": int(y.size)}
        return {"missing": "no finite, nonzero y to read eps from", "y_finite": int(np.isfinite(y).sum())}
    used = (x[usable] / y[usable]) ** 2
    mid = float(np.median(used))
    return {
        "eps_given": case.eps,
        "eps_used": mid,
        "spread": float(np.max(np.abs(used / mid - 1.0))),
        "elements": int(usable.sum()),
    }


# Two-pass and Welford are both accurate to O(u): they differ by rounding
# only, in an order no two implementations share, so no run tells them apart
# by more than noise; one-pass E[x²]-E[x]² loses bits to the offset.
VARIANCE_CANDIDATES = {
    "two-pass/welford": (Formulation(), Formulation(variance="welford")),
    "one-pass": (Formulation(variance="one-pass"),),
}


def _reduce_candidates(dtype: str) -> dict:
    # grouped by the accumulator dtype: "float32" (the sums kept in float32,
    # elementwise work in float32 or in the half dtype) or the half dtype
    return {
        "float32": (Formulation(), Formulation(compute=dtype, reduce="float32")),
        dtype: (Formulation(reduce=dtype), Formulation(compute=dtype)),
    }


def _statistics_observables(out: dict) -> list[str]:
    """The training step's outputs that the statistics decide (not the
    running statistics, which other conventions shape)."""
    return [f"train0.{o}" for o in ("batch_mean", "batch_var", "invstd", "y") if f"train0.{o}" in out]


def formulation_facts(case: Case, inputs: dict, out: dict, groups: dict) -> dict:
    """Which group of formulations explains the training step: every
    candidate's score (error/bound against the backend, <= 1 explains)."""
    names = _statistics_observables(out)
    if "train0.y" not in names:
        return {"missing": "the backend returned no training output"}
    label_of = {f.label(): g for g, fs in groups.items() for f in fs}
    forms = [f for fs in groups.values() for f in fs]
    ranked, canonical = rank_formulations(case, inputs, {k: out[k] for k in names}, forms, names)
    for t in ranked:
        t["group"] = label_of[t["formulation"]]
    keys = ("group", "formulation", "score", "ulps", "explains", "error")
    return {"ranked": [{k: t[k] for k in keys} for t in ranked], "canonical_score": canonical, "observables": names}


def outcome_facts(case: Case, inputs: dict, out: dict) -> dict:
    """What a training step gave where the arithmetic has no finite answer
    or a degenerate one: y against beta, and the running variance."""
    if "train0.y" not in out:
        return {"missing": "the backend returned no training output"}
    y = _rows(case, out["train0.y"])
    c = case.channels
    beta = _f64(inputs["beta"]) if "beta" in inputs else np.zeros(c)
    gamma = _f64(inputs["gamma"]) if "gamma" in inputs else np.ones(c)
    finite = np.isfinite(y)
    # y = beta to within rounding of the terms that cancel: beta itself, and
    # in a folded x*a + b (a = gamma/sqrt(eps)) the products |x*a| ~ |b|
    u = float(np.finfo(numpy_dtype(case.dtype)).eps)
    folded = np.abs(gamma)[:, None] * np.abs(_rows(case, inputs["x0"])) / np.sqrt(case.eps) if case.eps > 0 else 0
    tol = 8 * u * (np.abs(beta)[:, None] + folded)
    facts = {
        "y_nan": int(np.isnan(y).sum()),
        "y_inf": int(np.isinf(y).sum()),
        "y_size": int(y.size),
        "y_is_beta": bool(finite.all() and (np.abs(y - beta[:, None]) <= tol).all()),
        "y_sample": [float(v) for v in y[:, 0]],
    }
    if "train0.running_var" in out:
        rv = _f64(out["train0.running_var"])
        facts["running_var"] = [float(v) for v in rv]
    return facts


def frozen_facts(case: Case, inputs: dict, out: dict) -> dict:
    """How far y lies from each reading of a frozen step (relative to y's
    size), how far the running statistics moved, and which gradients came back."""
    if "train0.y" not in out:
        return {"missing": "the backend returned no training output"}
    from crossbn.oracle.expected import simulate
    from crossbn.oracle.steps import FROZEN

    y = _f64(out["train0.y"])
    scale = float(np.max(np.abs(y[np.isfinite(y)]), initial=0.0)) or 1.0
    away = {}
    for reading in FROZEN:
        exp, _ = simulate(case, inputs, frozen=reading)
        away[reading] = float(np.max(np.abs(y - exp["train0.y"]))) / scale
    facts = {
        "y_away": away,
        "gradients": sorted(k.split(".", 1)[1] for k in out if k.endswith((".dx", ".dgamma", ".dbeta"))),
    }
    if "train0.running_mean" in out and "train0.running_var" in out:
        before = np.concatenate([_f64(inputs["running_mean"]), _f64(inputs["running_var"])])
        after = np.concatenate([_f64(out["train0.running_mean"]), _f64(out["train0.running_var"])])
        facts["running_moved"] = float(np.max(np.abs(after - before) / np.maximum(np.abs(before), 1e-30)))
    return facts


def facts(probe: str, case: Case, inputs: dict, out: dict) -> dict:
    if probe == "train":
        return train_facts(case, inputs, out)
    if probe == "eps":
        return eps_facts(case, inputs, out)
    if probe == "variance":
        return formulation_facts(case, inputs, out, VARIANCE_CANDIDATES)
    if probe.startswith("reduce-"):
        return formulation_facts(case, inputs, out, _reduce_candidates(case.dtype))
    if probe == "frozen":
        return frozen_facts(case, inputs, out)
    return outcome_facts(case, inputs, out)
