"""Formulation fingerprints: which way of computing BatchNorm explains a backend.

A `Formulation` (formulation.py) is one way real implementations compute BatchNorm, simulated in
the backend's dtype. `diagnose` scores formulations against what the backend returned and names
the one that explains it best. score(F) is the worst error/bound over every compared element with
F's output in place of the exact value; margin = score(exact canonical) / score(best). The search
starts from the backend's documented semantics and greedily combines single changes (up to
MAX_CHANGES). A formulation *explains* the backend when its score is at most 1: the backend's
output is within rounding of it.

Design notes: docs/internals/oracle-and-verdict.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from crossbn.oracle.expected import simulate as simulate_oracle
from crossbn.oracle.formulation import Formulation, simulate_with_spread
from crossbn.oracle.tolerance import model_bounds, unit_roundoff
from crossbn.spec.dtypes import overflow_threshold
from crossbn.verdict.compare import full_bound, ulp

MAX_CHANGES = 3
# Where rounding dominates a formulation's result (E[x²]-E[x]² at a large
# offset, sums in float16), its value depends on the summation order, which
# no two implementations share. Each formulation is therefore evaluated in
# three orders (formulation.simulate_with_spread); their range estimates its
# rounding spread, and a backend within NOISE_FACTOR spreads of it is as
# close as the formulation can be pinned down. Three samples of a spread
# underestimate its range: 4 covers the range of a sum's rounding error
# with high probability when it behaves like a normal variable (4 sigma).
NOISE_FACTOR = 4.0
# A change must at least halve the score to be kept: rounding-level
# differences between formulations are not evidence.
IMPROVEMENT = 2.0
# Element ratios are capped here so that one NaN/Inf disagreement or
# one huge error does not make every candidate equally infinite.
_CAP = 1e12
SCORE_CAP = _CAP  # a score this high: a NaN/Inf no formulation puts there (root_causes.py)
# Elements simulated per diagnosis at most (each formulation costs three runs
# of the case): about 3 s of NumPy. Large cases search fewer changes.
BUDGET = 5e7
# Clamped eps floors seen in real kernels: cuDNN's CUDNN_BN_MIN_EPSILON and
# TensorFlow's fused kernels (1.001e-5, tf.nn.fused_batch_norm).
EPS_FLOORS = (1e-5, 1.001e-5)


def _single_changes(case, base: Formulation) -> list[Formulation]:
    """Every formulation one aspect (or one known pair of aspects) away from
    `base` that can matter for `case`."""
    trains = case.train_steps > 0
    running = trains and case.track_running_stats
    changes: list[dict[str, Any]] = [
        dict(variance="one-pass"),
        dict(variance="one-pass-unclamped"),
        dict(variance="welford"),
        dict(order="sequential" if base.order == "pairwise" else "pairwise"),
    ]
    if base.variance == "two-pass" and base.order == "pairwise":
        # E[x²]-E[x]² summed sequentially (XLA on CPU; PyTorch over a strided axis)
        # can be no closer than the two-pass formulas with pairwise sums: one
        # change at a time would never reach it
        changes += [
            dict(variance="one-pass", order="sequential"),
            dict(variance="one-pass-unclamped", order="sequential"),
        ]
    changes += [
        dict(normalize="divide"),
        dict(eps_in_root=False),
    ]
    if case.reduction_size > 1:
        changes.append(dict(norm_var="unbiased"))
    if case.affine:
        changes.append(dict(affine="folded"))
    if running:
        changes.append(dict(running_var="unbiased" if base.running_var == "biased" else "biased"))
        if not case.cumulative and case.momentum != 0.5:
            changes.append(dict(momentum="new" if base.momentum == "old" else "old"))
        if case.reduction_size == 0:  # what an empty batch does to the running statistics
            changes.append(dict(empty_batch="skip" if base.empty_batch == "nan" else "nan"))
        if case.frozen:  # what a frozen layer's training step computes
            changes.append(dict(frozen="inference" if base.frozen == "batch" else "batch"))
    changes += [dict(eps_floor=floor) for floor in EPS_FLOORS if case.eps < floor]
    if base.hyperparameters == "exact" and (
        np.float32(case.eps) != case.eps or np.float32(case.momentum) != case.momentum
    ):
        changes.append(dict(hyperparameters="float32"))
    if case.dtype == "float64":
        changes.append(dict(compute="float32"))
    if case.dtype in ("float32", "float64"):
        # the input held in half precision (autocast, a half-precision copy)
        # apart from where the arithmetic and the sums are done
        if not base.input:
            changes += [dict(input="float16"), dict(input="bfloat16")]
        else:
            changes += [dict(reduce=base.input), dict(compute=base.input)]
    if case.dtype in ("float16", "bfloat16"):
        # reductions in the half dtype; everything in it; or elementwise in it
        # with float32 accumulators (what NumPy's and many kernels' half sums do)
        changes += [dict(reduce=case.dtype), dict(compute=case.dtype), dict(compute=case.dtype, reduce="float32")]
        if base.compute == case.dtype:
            changes.append(dict(reduce="float32"))
    out = []
    for ch in changes:
        cand = dataclasses.replace(base, **ch)
        if cand.reduce == cand.compute_dtype(case):
            cand = dataclasses.replace(cand, reduce="")  # one spelling of "accumulate in the compute dtype"
        if cand != base and cand not in out:
            out.append(cand)
    return out


def _ratio(actual: np.ndarray, target: np.ndarray, bound: np.ndarray, out_dtype: str, free=None) -> float:
    """Worst |actual - target| / bound; NaN/Inf compared by position and sign,
    except where `free` (a mask) says any value, NaN included, is as likely."""
    a = np.asarray(actual, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if a.shape != t.shape:
        return _CAP
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        t = np.where(np.abs(t) >= overflow_threshold(out_dtype), np.copysign(np.inf, t), t)
        both = np.isfinite(a) & np.isfinite(t)
        all_finite = bool(both.all())  # the usual case: no masking needed
        err = np.abs(a - t) if all_finite else np.where(both, np.abs(a - t), 0.0)
        r = np.where(err == 0, 0.0, err / bound)
        same = both | (np.isnan(a) & np.isnan(t)) | (a == t)
        if free is not None:
            same = same | np.broadcast_to(free, same.shape)
        if not all_finite and not same.all():
            return _CAP  # a NaN/Inf where the target has none, or of the other sign
    # an unbounded (NaN) bound cannot tell formulations apart: fmax skips it
    return float(min(np.fmax.reduce(r, axis=None, initial=0.0), _CAP))


def score(
    actual: dict, target: dict, exact: dict, bounds: dict, spread: dict | None = None, cache: dict | None = None
) -> float:
    """Worst error/bound of `actual` against `target` over the compared
    observables; `spread` (the target's rounding spread) widens the bound by
    NOISE_FACTOR times itself. `cache` keeps each observable's full bound
    between calls with the same `bounds` (the fingerprint search scores
    dozens of formulations against one output)."""
    worst = 0.0
    for name, model in bounds.items():
        if name not in actual:
            continue
        if name not in target:  # the formulation has no such output (a frozen step run as inference
            return _CAP  # computes no batch statistics): it cannot explain one
        a = actual[name]
        out_dtype = np.dtype(a.dtype).name if hasattr(a, "dtype") else "float64"
        key = (id(bounds), name, out_dtype)
        bound = None if cache is None else cache.get(key)
        if bound is None:
            bound = full_bound(model, exact[name], out_dtype)
            bound = np.where(np.isfinite(bound), bound, np.nan)
            if cache is not None:
                cache[key] = bound
        free = None
        if spread is not None and name in spread:
            free = np.isinf(spread[name])  # the formulation leaves these open, NaN included
            bound = bound + NOISE_FACTOR * spread[name]
            bound = np.where(np.isfinite(bound), bound, np.nan)
        worst = max(worst, _ratio(a, target[name], bound, out_dtype, free if free is not None and free.any() else None))
    return worst


def ulp_distance(actual: dict, target: dict, names) -> float:
    """Root-mean-square distance of `actual` from `target` in ulps of the
    returned dtype: the tie-break between formulations that all explain the
    output within rounding. An implementation computing the same operations
    in the same dtype lands on the same values far more often than one that
    merely rounds as accurately."""
    total, count = 0.0, 0
    for name in names:
        if name not in target:
            return _CAP
        a = np.asarray(actual[name], dtype=np.float64)
        t = np.asarray(target[name], dtype=np.float64)
        if a.shape != t.shape:
            return _CAP
        out_dtype = np.dtype(actual[name].dtype).name
        # near zero, the ulp of the observable's typical magnitude: a value
        # that should cancel to 0 is not a billion ulps off for being 1e-9
        typical = float(np.mean(np.abs(t[np.isfinite(t)]))) if np.isfinite(t).any() else 0.0
        d = np.maximum(ulp(t, out_dtype), ulp(np.array(typical), out_dtype))
        with np.errstate(invalid="ignore", over="ignore"):
            both = np.isfinite(a) & np.isfinite(t)
            same = both | (np.isnan(a) & np.isnan(t)) | (a == t)
            x = np.where(both, np.abs(a - t) / d, np.where(same, 0.0, _CAP))
        total += float(np.sum(np.minimum(x, _CAP) ** 2))
        count += x.size
    return float(np.sqrt(total / count)) if count else 0.0


def _precision(case, f: Formulation) -> str:
    """The lowest precision `f` computes anything in."""
    # (not the input's: rounding the input is one exact operation, which
    # every implementation that does it does alike)
    names = [f.compute_dtype(case)] + ([f.reduce] if f.reduce else [])
    return max(names, key=lambda d: unit_roundoff(d))


def _rank(t: dict) -> tuple:
    """Formulations that explain the output (score <= 1) are ranked among
    themselves by their ulp distance; the others by their score."""
    return (max(t["score"], 1.0), t["ulps"])


def _better(cand: dict, cur: dict) -> bool:
    """Keep a change when it at least halves a score above 1, or when both
    explain the output within rounding and it at least halves the ulp distance.
    Nothing halves 0: where the current formulation reproduces the output
    exactly (an empty batch's few values, say), no change is kept for a tie."""
    if cur["score"] > 1.0:  # not explained yet: a lower score is the evidence
        return cand["score"] * IMPROVEMENT <= cur["score"]
    # explained already: scores far below 1 differ by rounding luck, the ulp
    # distance is the evidence
    return cand["score"] <= 1.0 and cand["ulps"] * IMPROVEMENT <= cur["ulps"] and cur["ulps"] > 0


class Trials:
    """Scores formulations against one backend output, each simulated once
    and held to the error model of its own lowest precision."""

    def __init__(self, case, inputs, actual, exact, bounds, traces, *, plausible: bool = True):
        self.case, self.inputs, self.actual, self.exact, self.traces = case, inputs, actual, exact, traces
        self.names = [k for k in bounds if k in actual]
        self.bounds = bounds
        self.bounds_at = {_precision(case, Formulation()): bounds}
        self.tried: dict[str, dict] = {}
        self.full_bounds: dict = {}  # score's cache, for as long as the bounds dicts above live
        # the exact values' own (score, ulp distance): what a formulation has to do better than
        self.canonical = (
            score(actual, exact, exact, bounds, cache=self.full_bounds),
            ulp_distance(actual, exact, self.names),
        )
        self.plausible = plausible  # the search's guard below; off where given candidates are only compared

    def __call__(self, f: Formulation) -> dict:
        if f.label() not in self.tried:
            p = _precision(self.case, f)
            if p not in self.bounds_at:
                model = model_bounds(self.case, self.traces, compute_dtype=p)
                self.bounds_at[p] = {k: model[k] for k in self.names if k in model}
            target, spread = simulate_with_spread(self.case, self.inputs, f, sign_noise=NOISE_FACTOR)
            s = score(self.actual, target, self.exact, self.bounds_at[p], spread, self.full_bounds)
            ulps = ulp_distance(self.actual, target, self.names)
            if self.plausible and s < self.canonical[0] and ulps > NOISE_FACTOR * self.canonical[1]:
                # a formulation whose own rounding is so wide that it makes room for the output,
                # while the output lies far closer to the exact values than it does (E[x²]-E[x]²
                # at a large offset against a plain bug): it does not explain the output
                s = self.canonical[0]
            self.tried[f.label()] = {
                "formulation": f.label(),
                "description": f.describe(self.case),
                "score": s,
                "ulps": ulps,
                # how far the formulation itself lands from the exact values
                "error": score(target, self.exact, self.exact, self.bounds, cache=self.full_bounds),
                "_f": f,
            }
        return self.tried[f.label()]


def rank_formulations(case, inputs: dict, actual: dict, candidates, observables) -> tuple[list[dict], float]:
    """Each candidate formulation scored against `actual` on the named
    observables only (e.g. a training step's y and statistics, leaving out
    the running statistics that other conventions decide), best first by
    the same ranking as `diagnose`, and the canonical score (`actual`
    against the exact values). `crossbn conventions` asks which of a few
    formulations a targeted run matches."""
    exact, traces = simulate_oracle(case, inputs)
    model = model_bounds(case, traces)
    bounds = {k: model[k] for k in observables if k in model and k in actual}
    # a few given candidates compared with each other: no search, so no search guard
    trial = Trials(case, inputs, actual, exact, bounds, traces, plausible=False)
    ranked = sorted((trial(f) for f in candidates), key=_rank)
    return (
        [{k: v for k, v in t.items() if k != "_f"} | {"explains": t["score"] <= 1.0} for t in ranked],
        score(actual, exact, exact, bounds),
    )


def base_formulation(
    case,
    *,
    running_var: str = "biased",
    hyperparameters: str = "exact",
    empty_batch: str = "nan",
    frozen: str = "batch",
) -> Formulation:
    """The backend's documented semantics as a formulation: where the search
    starts, and what a diagnosis describes its changes against."""
    return Formulation(
        running_var=running_var,
        hyperparameters=hyperparameters,
        empty_batch=empty_batch if case.reduction_size == 0 else "nan",
        frozen=frozen if case.frozen and case.train_steps else "batch",
    )


def diagnose(
    case,
    inputs: dict,
    actual: dict,
    exact: dict,
    bounds: dict,
    traces,
    *,
    running_var: str = "biased",
    hyperparameters: str = "exact",
    empty_batch: str = "nan",
    frozen: str = "batch",
) -> dict:
    """The formulation that best explains `actual`, with the evidence.

    `exact`/`bounds`/`traces`: the oracle's canonical observables, model
    bounds (the verdict's own) and traces; `running_var`/`hyperparameters`/
    `empty_batch`: the backend's documented convention, where the search
    starts (`empty_batch` only matters, and is only part of the formulation,
    for an empty batch; `frozen` likewise for a frozen layer). A
    formulation in a lower precision than the case's is held to the error
    model of that precision: a float32 computation of a float64 case may
    stray as far as float32 rounding allows, and no further. The search
    simulates at most BUDGET elements in all (large cases try fewer changes)."""
    canonical = score(actual, exact, exact, bounds)
    base = base_formulation(
        case, running_var=running_var, hyperparameters=hyperparameters, empty_batch=empty_batch, frozen=frozen
    )
    trial = Trials(case, inputs, actual, exact, bounds, traces)
    tried = trial.tried
    cost = 3 * len(case.steps) * int(np.prod(case.shape))
    budget = {"left": BUDGET}

    def evaluate(f: Formulation) -> dict | None:
        if f.label() not in tried:
            if budget["left"] < cost and tried:
                return None
            budget["left"] -= cost
        return trial(f)

    def kept(t: dict, cur: dict) -> bool:
        if not _better(t, cur):
            return False
        f = t["_f"]
        if f.order == cur["_f"].order:
            return True
        # the summation order is rounding itself: claimed only where the same
        # formulation in the other order does not explain the output and this
        # one at least halves its score; never on ulps alone
        twin = evaluate(dataclasses.replace(f, order=cur["_f"].order))
        return twin is None or (twin["score"] > 1.0 and t["score"] * IMPROVEMENT <= twin["score"])

    best = evaluate(base)
    assert best is not None  # the first evaluation always runs: nothing was tried yet
    if base != Formulation():
        cand = evaluate(Formulation())
        if cand is not None and _better(cand, best):
            best = cand
    for _ in range(MAX_CHANGES):
        tried_now = (evaluate(f) for f in _single_changes(case, best["_f"]))
        cand = min((t for t in tried_now if t is not None and kept(t, best)), key=_rank, default=None)
        if cand is None:
            break
        best = cand
    ranked = sorted(tried.values(), key=_rank)
    evidence = [{k: v for k, v in t.items() if k != "_f"} for t in ranked]
    f = best["_f"]
    return {
        "formulation": f.label(),
        # what the backend does beyond its documented semantics
        "description": f.describe(case, base),
        "changes": f.changes(base),
        "documented": base.describe(case),
        "explains": best["score"] <= 1.0,
        "score": best["score"],
        "ulps": best["ulps"],
        "canonical_score": canonical,
        "margin": canonical / best["score"] if best["score"] > 0 else float("inf"),
        "runner_up": evidence[1] if len(evidence) > 1 else None,
        # every formulation tried, best first: the evidence
        "evidence": evidence[:12],
        "searched": len(tried),
        "search_complete": budget["left"] >= 0,
        "source": {"how": "own"},  # root_causes.py: or confirmed against a representative
    }
