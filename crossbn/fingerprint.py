"""Formulation fingerprints: which way of computing BatchNorm explains a backend.

A `Formulation` is one choice per aspect where real implementations differ
(variance algorithm, where eps goes, folded affine, precision of the
reductions, running-variance correction, momentum direction, eps clamping,
...). `simulate` runs a whole case with it, in the backend's dtype, through
`reference/variants.py`. `diagnose` scores formulations against what the
backend returned and names the one that explains it best:

  score(F)  = the worst error/bound over every compared element, with the
              backend's output measured against F's output instead of the
              exact value (the same bound as the verdict: score(exact
              canonical) is the result's own ratio)
  margin    = score(exact canonical) / score(best)

The search starts from the backend's documented semantics, tries every
single change, and keeps the best change while it at least halves the score
(greedy, up to MAX_CHANGES changes combined: "one-pass variance, computed in
float32" is two). A formulation *explains* the backend when its score is at
most 1: the backend's output is within rounding of it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from reference import variants as var

from .compare import full_bound, ulp
from .dtypes import numpy_dtype, overflow_threshold
from .tolerance import model_bounds, unit_roundoff

MAX_CHANGES = 3
# Where rounding dominates a formulation's result (E[x²]-E[x]² at a large
# offset, sums in float16), its value depends on the summation order, which
# no two implementations share. Each formulation is therefore evaluated in
# two orders (the second with the reduced axes reversed); their difference
# estimates its rounding spread, and a backend within NOISE_FACTOR spreads of
# it is as close as the formulation can be pinned down. Two samples of a
# spread underestimate its range: 4 covers the range of a sum's rounding error
# with high probability when it behaves like a normal variable (4 sigma).
NOISE_FACTOR = 4.0
# A change must at least halve the score to be kept: rounding-level
# differences between formulations are not evidence.
IMPROVEMENT = 2.0
# Element ratios are capped here so that one NaN/Inf disagreement or
# one huge error does not make every candidate equally infinite.
_CAP = 1e12
# Elements simulated per diagnosis at most (each formulation costs two runs
# of the case): about 3 s of NumPy. Large cases search fewer changes.
BUDGET = 5e7
# Clamped eps floors seen in real kernels: cuDNN's CUDNN_BN_MIN_EPSILON and
# TensorFlow's fused kernels (1.001e-5, tf.nn.fused_batch_norm).
EPS_FLOORS = (1e-5, 1.001e-5)


@dataclass(frozen=True)
class Formulation:
    compute: str = ""             # arithmetic dtype; "" = the case's (float32 for float16/bfloat16)
    reduce: str = ""              # accumulator dtype of the reductions (sums rounded to compute after); "" = compute
    variance: str = "two-pass"    # "two-pass" | "one-pass" (E[x²]-E[x]²) | "welford"
    normalize: str = "multiply"   # (x-mean)*rsqrt(var+eps) | "divide": (x-mean)/sqrt(var+eps)
    eps_in_root: bool = True      # False: 1/(sqrt(var)+eps)
    norm_var: str = "biased"      # variance used to normalize: "biased" | "unbiased" (n/(n-1))
    affine: str = "separate"      # gamma*x_hat+beta | "folded": x*a+b
    running_var: str = "biased"   # variance fed to the running variance: "biased" | "unbiased"
    momentum: str = "old"         # what the case's momentum weighs: "old" (canonical) | "new"
    eps_floor: float = 0.0        # eps is clamped to at least this
    hyperparameters: str = "exact"  # eps and momentum "exact" or rounded to "float32"

    def changes(self, base: "Formulation | None" = None) -> dict:
        """The aspects where this formulation differs from `base` (the canonical one)."""
        base = base or Formulation()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(base, f.name)}

    def describe(self, case, base: "Formulation | None" = None) -> str:
        words = {
            "variance": {"one-pass": "one-pass variance E[x²]-E[x]²", "welford": "Welford variance"},
            "normalize": {"divide": "division by sqrt(var+eps)"},
            "norm_var": {"unbiased": "unbiased variance in the normalization"},
            "affine": {"folded": "folded affine x·a+b"},
            "running_var": {"unbiased": "running variance with Bessel's correction",
                            "biased": "running variance without Bessel's correction"},
            "momentum": {"new": "momentum weighing the new batch statistic"},
        }
        parts = []
        for k, v in self.changes(base).items():
            if k in words:
                parts.append(words[k][v])
            elif k == "compute":
                parts.append(f"computed in {v}")
            elif k == "reduce":
                parts.append(f"reductions accumulated in {v}")
            elif k == "eps_in_root":
                parts.append("eps outside the square root")
            elif k == "eps_floor":
                parts.append(f"eps clamped to at least {v:g}")
            elif k == "hyperparameters":
                parts.append("eps and momentum rounded to float32")
        if parts:
            return ", ".join(parts)
        return ("as documented" if base and base != Formulation() else "the canonical formulas") + \
            f", computed in {self.compute_dtype(case)}"

    def compute_dtype(self, case) -> str:
        if self.compute:
            return self.compute
        return "float32" if case.dtype in ("float16", "bfloat16") else case.dtype

    def label(self) -> str:
        ch = self.changes()
        return ",".join(f"{k}={v}" for k, v in ch.items()) or "canonical"


def _reversed(case, inputs: dict) -> dict:
    """The inputs with every reduced axis reversed: the same statistics in
    exact arithmetic, another summation order in floating point."""
    axes = tuple(a for a in range(case.rank) if a != case.channel_axis)
    return {k: (np.flip(v, axes) if k[:1] == "x" or k[:2] == "dy" else v) for k, v in inputs.items()}


def simulate_with_spread(case, inputs: dict, f: Formulation) -> tuple[dict, dict]:
    """`simulate`, and the rounding spread of each observable: how far two
    summation orders land apart. One pair of orders can agree by chance in
    one channel or step, so the spread is pooled over every channel and step
    of the same observable (e.g. all `*.batch_var`): for per-channel
    statistics the largest difference; for y and dx, whose noise is
    inherited from the statistics of their channel, the largest difference
    relative to the channel's magnitude, times that magnitude."""
    first = simulate(case, inputs, f)
    axes = tuple(a for a in range(case.rank) if a != case.channel_axis)
    second = simulate(case, _reversed(case, inputs), f)
    diff, scale, pooled = {}, {}, {}
    for k, v in first.items():
        w = np.flip(second[k], axes) if k.endswith((".y", ".dx")) else second[k]
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(v) & np.isfinite(w)
            diff[k] = np.where(ok, np.abs(v - w), 0.0)
            kind = k.split(".", 1)[1]
            if kind in ("y", "dx"):
                scale[k] = np.where(ok, np.abs(v), 0.0).max(axis=axes, keepdims=True)
                rel = np.where(scale[k] > 0, diff[k].max(axis=axes, keepdims=True) / scale[k], 0.0)
                pooled[kind] = max(pooled.get(kind, 0.0), float(rel.max(initial=0.0)))
            else:
                pooled[kind] = max(pooled.get(kind, 0.0), float(diff[k].max(initial=0.0)))
    spread = {}
    for k, d in diff.items():
        kind = k.split(".", 1)[1]
        spread[k] = (np.broadcast_to(pooled[kind] * scale[k], d.shape) if kind in ("y", "dx")
                     else np.full(d.shape, pooled[kind]))
    return first, spread


def simulate(case, inputs: dict, f: Formulation) -> dict:
    """The observables an implementation computing `f` returns for `case`."""
    cd_name = f.compute_dtype(case)
    cd, rd = numpy_dtype(cd_name), numpy_dtype(f.reduce or cd_name)
    store = var.rounder(numpy_dtype(case.dtype))
    rc = var.rounder(cd)
    ax = case.channel_axis
    eps, momentum = case.eps, case.momentum
    if f.hyperparameters == "float32":
        eps, momentum = float(np.float32(eps)), float(np.float32(momentum))
    eps = max(eps, f.eps_floor)
    eps_c = float(rc(eps))
    # the inputs as the implementation holds them: cast to its compute dtype
    f64 = lambda a: None if a is None else rc(np.asarray(a, dtype=np.float64))  # noqa: E731
    gamma, beta = f64(inputs.get("gamma")), f64(inputs.get("beta"))
    running = (f64(inputs["running_mean"]), f64(inputs["running_var"])) if case.track_running_stats else None
    n = case.reduction_size
    out: dict[str, np.ndarray] = {}
    for k, step in enumerate(case.steps):
        x = f64(inputs[f"x{k}"])
        use_batch = step != "eval" or not case.track_running_stats
        var_term: float | np.ndarray = 1.0
        if use_batch:
            if f.variance == "welford":  # the running (count, mean, M2) state is the accumulator
                mean, v = var.var_welford(x, ax, rd)
            else:
                mean = var.mean(x, ax, cd, rd)
                v = (var.var_one_pass if f.variance == "one-pass" else var.var_two_pass)(x, mean, ax, cd, rd)
            mean, v = rc(mean), rc(v)
            v_norm = rc(v * (n / (n - 1))) if f.norm_var == "unbiased" and n > 1 else v
            if f.norm_var == "unbiased" and n > 1:
                var_term = n / (n - 1)
        else:
            mean, v = running
            v_norm = v
        invstd = var.inverse_std(v_norm, eps_c, cd, eps_in_root=f.eps_in_root)
        if not f.eps_in_root:
            with np.errstate(divide="ignore", invalid="ignore"):
                sd = np.sqrt(v_norm)
                var_term = var_term * np.where(sd > 0, (sd + eps_c) / sd, 1.0)
        divide_by = rc(np.sqrt(rc(v_norm + eps_c))) if f.normalize == "divide" and f.eps_in_root else None
        x_hat = var.normalize(x, mean, invstd, ax, cd, divide_by=divide_by)
        y = var.affine(x, x_hat, mean, invstd, gamma, beta, ax, cd, folded=f.affine == "folded")
        out[f"{step}.y"] = store(y)
        if use_batch:
            out.update({f"{step}.batch_mean": mean, f"{step}.batch_var": v, f"{step}.invstd": invstd})
        if use_batch and running is not None and step != "eval":
            fed = rc(v * (n / (n - 1))) if f.running_var == "unbiased" and n > 1 else v
            if case.cumulative:
                running = (var.cumulative_update(running[0], mean, k + 1, cd),
                           var.cumulative_update(running[1], fed, k + 1, cd))
            else:
                direction = "old" if f.momentum == "old" else "new"
                running = (var.running_update(running[0], mean, momentum, cd, weight_on=direction),
                           var.running_update(running[1], fed, momentum, cd, weight_on=direction))
            running = (store(running[0]), store(running[1]))
            out[f"{step}.running_mean"], out[f"{step}.running_var"] = running
        if case.gradients:
            dy = f64(inputs[f"dy{k}"])
            if use_batch:
                g = var.train_backward(dy, x_hat, invstd, gamma, ax, cd, var_term=var_term, acc=rd)
            else:
                g = var.eval_backward(dy, x_hat, invstd, gamma, ax, cd, acc=rd)
            out[f"{step}.dx"] = store(g["dx"])
            if case.affine:
                out[f"{step}.dgamma"], out[f"{step}.dbeta"] = store(g["dgamma"]), store(g["dbeta"])
    return out


def _single_changes(case, base: Formulation) -> list[Formulation]:
    """Every formulation one aspect away from `base` that can matter for `case`."""
    trains = case.train_steps > 0
    running = trains and case.track_running_stats
    changes = [dict(variance="one-pass"), dict(variance="welford"), dict(normalize="divide"),
               dict(eps_in_root=False)]
    if case.reduction_size > 1:
        changes.append(dict(norm_var="unbiased"))
    if case.affine:
        changes.append(dict(affine="folded"))
    if running:
        changes.append(dict(running_var="unbiased" if base.running_var == "biased" else "biased"))
        if not case.cumulative and case.momentum != 0.5:
            changes.append(dict(momentum="new" if base.momentum == "old" else "old"))
    changes += [dict(eps_floor=floor) for floor in EPS_FLOORS if case.eps < floor]
    if base.hyperparameters == "exact" and (np.float32(case.eps) != case.eps or np.float32(case.momentum)
                                            != case.momentum):
        changes.append(dict(hyperparameters="float32"))
    if case.dtype == "float64":
        changes.append(dict(compute="float32"))
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


def _ratio(actual: np.ndarray, target: np.ndarray, bound: np.ndarray, out_dtype: str) -> float:
    """Worst |actual - target| / bound; NaN/Inf compared by position and sign."""
    a = np.asarray(actual, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if a.shape != t.shape:
        return _CAP
    top = overflow_threshold(out_dtype)
    t = np.where(np.isfinite(t) & (np.abs(t) >= top), np.copysign(np.inf, t), t)
    both = np.isfinite(a) & np.isfinite(t)
    same_special = ~both & ((np.isnan(a) & np.isnan(t)) | (a == t))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        err = np.where(both, np.abs(a - t), 0.0)
        r = np.where(err == 0, 0.0, err / bound)
    r = np.where(np.isnan(r), 0.0, r)  # an unbounded (NaN) bound cannot tell formulations apart
    r = np.where(both | same_special, r, _CAP)
    return float(min(r.max(initial=0.0), _CAP))


def score(actual: dict, target: dict, exact: dict, bounds: dict, spread: dict | None = None) -> float:
    """Worst error/bound of `actual` against `target` over the compared
    observables; `spread` (the target's rounding spread) widens the bound by
    NOISE_FACTOR times itself."""
    worst = 0.0
    for name, model in bounds.items():
        if name not in actual or name not in target:
            continue
        a = actual[name]
        out_dtype = np.dtype(a.dtype).name if hasattr(a, "dtype") else "float64"
        bound = full_bound(model, exact[name], out_dtype)
        if spread is not None and name in spread:
            bound = bound + NOISE_FACTOR * spread[name]
        bound = np.where(np.isfinite(bound), bound, np.nan)
        worst = max(worst, _ratio(a, target[name], bound, out_dtype))
    return worst


def ulp_distance(actual: dict, target: dict, names) -> float:
    """Root-mean-square distance of `actual` from `target` in ulps of the
    returned dtype: the tie-break between formulations that all explain the
    output within rounding. An implementation computing the same operations
    in the same dtype lands on the same values far more often than one that
    merely rounds as accurately."""
    total, count = 0.0, 0
    for name in names:
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
    names = [f.compute_dtype(case)] + ([f.reduce] if f.reduce else [])
    return max(names, key=lambda d: unit_roundoff(d))


def _rank(t: dict) -> tuple:
    """Formulations that explain the output (score <= 1) are ranked among
    themselves by their ulp distance; the others by their score."""
    return (max(t["score"], 1.0), t["ulps"])


def _better(cand: dict, cur: dict) -> bool:
    """Keep a change when it at least halves the score, or when both explain
    the output within rounding and it at least halves the ulp distance."""
    if cand["score"] * IMPROVEMENT <= cur["score"]:
        return True
    return cand["score"] <= max(cur["score"], 1.0) and cand["ulps"] * IMPROVEMENT <= cur["ulps"]


def diagnose(case, inputs: dict, actual: dict, exact: dict, bounds: dict, traces, *,
             running_var: str = "biased", hyperparameters: str = "exact") -> dict:
    """The formulation that best explains `actual`, with the evidence.

    `exact`/`bounds`/`traces`: the oracle's canonical observables, model
    bounds (the verdict's own) and traces; `running_var`/`hyperparameters`:
    the backend's documented convention, where the search starts. A
    formulation in a lower precision than the case's is held to the error
    model of that precision: a float32 computation of a float64 case may
    stray as far as float32 rounding allows, and no further. The search
    simulates at most BUDGET elements in all (large cases try fewer changes)."""
    names = [k for k in bounds if k in actual]
    canonical = score(actual, exact, exact, bounds)
    base = Formulation(running_var=running_var, hyperparameters=hyperparameters)
    own = _precision(case, Formulation())
    tried: dict[str, dict] = {}
    bounds_at: dict[str, dict] = {own: bounds}
    cost = 2 * len(case.steps) * int(np.prod(case.shape))
    budget = {"left": BUDGET}

    def evaluate(f: Formulation) -> dict | None:
        if f.label() not in tried:
            if budget["left"] < cost and tried:
                return None
            budget["left"] -= cost
            p = _precision(case, f)
            if p not in bounds_at:
                model = model_bounds(case, traces, compute_dtype=p)
                bounds_at[p] = {k: model[k] for k in bounds if k in model}
            target, spread = simulate_with_spread(case, inputs, f)
            tried[f.label()] = {"formulation": f.label(), "description": f.describe(case),
                                "score": score(actual, target, exact, bounds_at[p], spread),
                                "ulps": ulp_distance(actual, target, names), "_f": f}
        return tried[f.label()]

    best = evaluate(base)
    if base != Formulation():
        cand = evaluate(Formulation())
        if cand is not None and _better(cand, best):
            best = cand
    for _ in range(MAX_CHANGES):
        options = [t for t in (evaluate(f) for f in _single_changes(case, best["_f"])) if t is not None]
        cand = min(options, key=_rank, default=None)
        if cand is None or not _better(cand, best):
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
    }
