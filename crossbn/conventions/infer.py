"""From the probes' facts to each observed convention, and the declared one.

One function per property; each returns (observed, detail). `observed` is a
short word from a fixed vocabulary (PROPERTIES) where the evidence is
clear, "n/a", "undetermined", or "other (...)" with the numbers where it
fits no known convention. `declared(backend, key)` is the backend's own
declaration (`conventions` ClassVar): where there is one and the
observation differs, the record is a finding.
"""

from __future__ import annotations

import numpy as np

from crossbn.verdict.fingerprint import IMPROVEMENT

# property -> (column header, what it says, the values it takes)
PROPERTIES = {
    "momentum": ("momentum weighs", "what the framework's momentum argument weighs", "old | new"),
    "running_var": ("running var", "variance fed into the running variance", "biased | unbiased"),
    "hyperparameters": ("eps/momentum", "precision eps and momentum reach the computation in", "exact | float32"),
    "eps_floor": ("eps floor", "the smallest eps actually used", "none | <value>"),
    "variance": ("variance", "the batch-variance algorithm (float32)", "two-pass/welford | one-pass"),
    "reduce_float16": ("f16 sums", "accumulator dtype of float16 inputs' statistics", "float32 | float16"),
    "reduce_bfloat16": ("bf16 sums", "accumulator dtype of bfloat16 inputs' statistics", "float32 | bfloat16"),
    "single_value": ("1 value/ch", "training on one value per channel", "error | beta | nan"),
    "eps0_zero_var": ("eps=0,var=0", "training with eps 0 on a constant channel", "nan | beta | error"),
    "frozen": (
        "frozen",
        "a frozen layer's training step: batch statistics and running ones updated, or run as inference",
        "batch | inference",
    ),
}

# the probe each property is read from (hyperparameters: both train and eps)
SOURCE = {
    "momentum": ("train",),
    "running_var": ("train",),
    "hyperparameters": ("train", "eps"),
    "eps_floor": ("eps",),
    "variance": ("variance",),
    "reduce_float16": ("reduce-float16",),
    "reduce_bfloat16": ("reduce-bfloat16",),
    "single_value": ("single-value",),
    "eps0_zero_var": ("eps0-zero-var",),
    "frozen": ("frozen",),
}

# Tolerance on w (weight kept on the old value) and c (variance factor):
# both are read in float32 at worst, to about 1e-6; the conventions they
# tell apart differ by 0.8 (w) and 0.14 (c).
_CLEAR = 1e-3


def declared(backend, key: str) -> str | None:
    """The backend's declaration for `key`, or None where it declares nothing.
    momentum, running_var, hyperparameters and eps_floor have a canonical
    default (a backend that says nothing is taken to follow crossbn's
    canonical semantics, and DESIGN.md: a backend that clamps eps reports a
    finding); the others are declared only where the framework documents
    them (backends/base.py OPTIONAL_CONVENTION_KEYS)."""
    c = backend.declared
    if key == "frozen" and backend.no_frozen:
        return None  # no frozen layer to declare anything of
    if key == "eps_floor":
        return c.eps_floor or "none"
    if key in ("reduce_float16", "reduce_bfloat16"):
        return c.half_reductions
    return getattr(c, key)


def _median(values) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def momentum(f: dict, case, backend) -> tuple[str, str]:
    kept, m, said = _median(f["kept_on_old"]), case.momentum, declared(backend, "momentum")
    detail = (
        f"kept {kept:.7g} of the old running value where the case asks {m:g} "
        f"(the adapter passes its declared '{said}' meaning)"
    )
    if abs(kept - m) <= _CLEAR:
        return said, detail
    if abs(kept - (1 - m)) <= _CLEAR:
        return {"old": "new", "new": "old"}[said], detail
    return f"other (kept {kept:.4g})", detail


def running_var(f: dict, case, backend) -> tuple[str, str]:
    c, n = _median(f["var_factor"]), f["n"]
    detail = f"running variance = {c:.7g} x the biased batch variance, n = {n} (unbiased: {n / (n - 1):.7g})"
    if abs(c - 1) <= _CLEAR:
        return "biased", detail
    if abs(c - n / (n - 1)) <= _CLEAR:
        return "unbiased", detail
    return f"other (x{c:.4g})", detail


def _precision_of(value: float, target: float, as_float32: tuple[float, ...], noise: float) -> str:
    """'exact', 'float32' or 'undetermined': is `value` `target`, or one of
    its float32 roundings, to well within the gap between them?"""
    gap = min(abs(t / target - 1) for t in as_float32)
    if noise > gap / 4:
        return "undetermined"
    if abs(value / target - 1) <= gap / 4:
        return "exact"
    if min(abs(value / t - 1) for t in as_float32) <= gap / 4:
        return "float32"
    return "undetermined"


def hyperparameters(train: dict | None, eps: dict | None, cases: dict) -> tuple[str, str]:
    """Read only from float64 runs: in float32 the inputs round eps and
    momentum to float32 anyway."""
    parts, details = {}, []
    if train and cases["train"].dtype == "float64":
        m = cases["train"].momentum
        kept = np.asarray(train["kept_on_old"])
        noise = float(np.ptp(kept)) / m
        # either meaning rounded: old-meaning m, or the new-meaning 1-m, stored as float32
        parts["momentum"] = _precision_of(_median(kept), m, (float(np.float32(m)), 1 - float(np.float32(1 - m))), noise)
        details.append(f"momentum used {_median(kept):.17g} for {m:g}")
    if eps and cases["eps"].dtype == "float64":
        given, used = eps["eps_given"], eps["eps_used"]
        if used / given > 1.5:
            parts["eps"] = "undetermined"
            details.append("eps clamped, its precision unseen")
        else:
            parts["eps"] = _precision_of(used, given, (float(np.float32(given)),), eps["spread"])
            details.append(f"eps used {used:.17g} for {given:g}")
    if not parts:
        return "undetermined", "no float64 run: float32 inputs round eps and momentum to float32 anyway"
    seen = {v for v in parts.values() if v != "undetermined"}
    detail = "; ".join(details)
    if not seen:
        return "undetermined", detail
    if len(seen) == 1:
        return seen.pop(), detail
    return ", ".join(f"{k} {v}" for k, v in parts.items()), detail


def eps_floor(f: dict, case, backend) -> tuple[str, str]:
    given, used = f["eps_given"], f["eps_used"]
    detail = f"eps {given:g} given, {used:.7g} used (from y = x/sqrt(eps), {f['elements']} elements)"
    if f["spread"] > _CLEAR:  # no single eps makes y = x/sqrt(eps): something else normalizes
        return "undetermined", (
            f"(x/y)² is not one value (it spreads by {f['spread']:.3g}): the given running "
            f"statistics (mean 0, variance 0) are not what eval normalizes with"
        )
    if abs(used / given - 1) <= _CLEAR:
        return "none", detail
    if used > given:
        return f"{used:.4g}", detail
    return f"other ({used:.4g})", detail


def _listing(f: dict) -> str:
    return (
        "error/bound against the backend: "
        + ", ".join(f"{t['formulation']} {t['score']:.3g}" for t in f["ranked"])
        + f" (on {', '.join(f['observables'])})"
    )


def variance(f: dict, case, backend) -> tuple[str, str]:
    """Two-pass and Welford are accurate at this offset; one-pass is not, by
    an amount that depends on its summation order. So: accurate (within the
    bound of the exact values) is two-pass/Welford; inaccurate by the order
    of magnitude that one-pass cancellation produces (simulated, both
    orders) is one-pass; anything else is other."""
    s = f["canonical_score"]
    one_pass = next(t for t in f["ranked"] if t["group"] == "one-pass")
    detail = (
        f"error/bound against the exact values: {s:.3g}; E[x²]-E[x]² simulated: {one_pass['error']:.3g}; " + _listing(f)
    )
    if s <= 1.0:
        return "two-pass/welford", detail
    if one_pass["explains"] or 0.1 <= s / one_pass["error"] <= 10.0:
        return "one-pass", detail
    return f"other (error/bound {s:.3g})", detail


def accumulator(f: dict, case, backend) -> tuple[str, str]:
    """The accumulator group of the best-ranked formulation; undetermined
    when the best of another group explains the run as well (within the
    factor IMPROVEMENT of ulp distance that diagnose also asks of a change)."""
    ranked = f["ranked"]
    best = ranked[0]
    detail = _listing(f)
    if not best["explains"]:
        return f"other (nearest {best['group']})", detail
    rival = next((t for t in ranked if t["group"] != best["group"] and t["explains"]), None)
    if rival is not None and rival["ulps"] <= IMPROVEMENT * best["ulps"]:
        return "undetermined", detail + f"; {best['group']} and {rival['group']} sums both within rounding"
    return best["group"], detail


def explained_by(f: dict) -> set[str]:
    """Every group with a formulation that explains the run within rounding."""
    return {t["group"] for t in f.get("ranked", ()) if t["explains"]}


def outcome(f: dict, case, backend) -> tuple[str, str]:
    detail = (
        f"y: {f['y_nan']} NaN, {f['y_inf']} inf of {f['y_size']}; first per channel "
        f"{[round(v, 6) for v in f['y_sample']]}"
    )
    if "running_var" in f:
        detail += f"; running variance {[round(v, 6) for v in f['running_var']]}"
    if f["y_nan"] == f["y_size"]:
        return "nan", detail
    if f["y_is_beta"]:
        return "beta", detail
    return f"other ({f['y_nan']} NaN, {f['y_inf']} inf)", detail


def frozen(f: dict, case, backend) -> tuple[str, str]:
    """batch: y is the batch-normalized one and the running statistics moved;
    inference: y is the running-normalized one and they did not move."""
    near = {k: v for k, v in f["y_away"].items() if v <= _CLEAR}
    moved = f.get("running_moved")
    params = "gamma and beta got gradients" if "dgamma" in f["gradients"] else "gamma and beta got no gradients"
    detail = (
        f"y within {f['y_away']['batch']:.3g} of the batch-statistics output, {f['y_away']['inference']:.3g} "
        f"of the running-statistics one (relative); running statistics moved by "
        f"{'nothing returned' if moved is None else format(moved, '.3g')}; {params}"
    )
    if set(near) == {"batch"} and (moved is None or moved > _CLEAR):
        return "batch", detail
    if set(near) == {"inference"} and (moved is None or moved == 0.0):
        return "inference", detail
    return "other", detail


READERS = {
    "momentum": momentum,
    "running_var": running_var,
    "eps_floor": eps_floor,
    "variance": variance,
    "reduce_float16": accumulator,
    "reduce_bfloat16": accumulator,
    "single_value": outcome,
    "eps0_zero_var": outcome,
    "frozen": frozen,
}


# properties whose observation is what the run did, an error included
OUTCOMES = ("single_value", "eps0_zero_var", "frozen")


def differs(key: str, observed: str, said: str | None, facts: dict | None) -> bool:
    """A finding: the backend declared `said` and something else was observed."""
    if said is None or observed in ("n/a", "undetermined"):
        return False
    if observed in ("error", "crash", "timeout") and key not in OUTCOMES:
        return False  # nothing seen of the convention itself; the record says what happened
    if key in ("reduce_float16", "reduce_bfloat16") and facts:
        return said not in explained_by(facts)
    if key == "eps_floor" and said != "none" and observed != "none":
        try:
            return abs(float(observed) / float(said) - 1) > _CLEAR
        except ValueError:
            return True
    return observed != said
