"""Fingerprints in plain words, and whether one is ambiguous.

A fingerprint is a formulation's label (crossbn/oracle/formulation.py,
`Formulation.label`): `key=value` parts, one per aspect where it differs from
the canonical formulas. `WORDS` says each aspect in words for the report's
tooltips, legend and finding pages; `rivals` names the other formulations
that explain a backend's output about as well as the diagnosed one.
"""

from __future__ import annotations

from crossbn.verdict.fingerprint import IMPROVEMENT

# key -> (the aspect, {value: words}); a value the table does not list is said as "<aspect>: <value>".
# "{v}" in a value's words is the value itself (a dtype, a number).
WORDS: dict[str, tuple[str, dict[str, str]]] = {
    "compute": ("arithmetic precision", {"*": "all arithmetic done in {v}"}),
    "reduce": ("precision of the reductions", {"*": "reductions (sums) computed in {v}"}),
    "variance": (
        "variance algorithm",
        {
            "one-pass": "variance in one pass, E[x²] − E[x]² (cancels catastrophically when the mean is large)",
            "welford": "variance by Welford's running update",
            "two-pass": "variance in two passes, E[(x − mean)²]",
        },
    ),
    "normalize": (
        "normalization",
        {
            "divide": "normalized by dividing by sqrt(var + eps), not multiplying by its inverse",
            "multiply": "normalized by multiplying by 1/sqrt(var + eps)",
        },
    ),
    "eps_in_root": (
        "where eps goes",
        {"False": "eps added outside the square root: 1/(sqrt(var) + eps)", "True": "eps inside the square root"},
    ),
    "norm_var": (
        "variance used to normalize",
        {
            "unbiased": "normalized with the unbiased variance (Bessel's correction, n−1)",
            "biased": "normalized with the biased variance (n)",
        },
    ),
    "affine": (
        "affine transform",
        {"folded": "affine folded into one multiply-add, x·a + b", "separate": "affine as γ·x̂ + β"},
    ),
    "running_var": (
        "running variance",
        {
            "unbiased": "running variance with Bessel's correction (n−1)",
            "biased": "running variance without Bessel's correction (n)",
        },
    ),
    "momentum": (
        "momentum direction",
        {
            "new": "momentum weighs the new batch statistic, not the old running value",
            "old": "momentum weighs the old running value",
        },
    ),
    "eps_floor": ("eps clamping", {"*": "eps clamped to at least {v} (as cuDNN and fused kernels do)"}),
    "hyperparameters": (
        "hyperparameter precision",
        {"float32": "eps and momentum rounded to float32 first", "exact": "eps and momentum used exactly"},
    ),
    "empty_batch": (
        "an empty batch",
        {
            "skip": "an empty batch leaves the running statistics unchanged",
            "nan": "an empty batch's NaN statistics are folded into the running statistics",
        },
    ),
    "frozen": (
        "a frozen layer",
        {
            "inference": "a frozen layer's training step runs as inference (running statistics)",
            "batch": "a frozen layer's training step uses the batch statistics",
        },
    ),
}
CANONICAL = "canonical"


def words(part: str) -> str:
    """One `key=value` part in words ("" for a part that is not key=value)."""
    if part == CANONICAL:
        return "the canonical formulas"
    key, eq, value = part.partition("=")
    if not eq:
        return ""
    if key not in WORDS:
        return f"{key}: {value}"
    aspect, values = WORDS[key]
    said = values.get(value) or values.get("*")
    return said.format(v=value) if said else f"{aspect}: {value}"


def parts(label: str) -> list[dict]:
    """A fingerprint label's parts, each with its words."""
    return [{"part": p, "words": words(p)} for p in (label.split(",") if label else [])]


def legend(labels) -> list[dict]:
    """Every part of the given labels once, in the order first seen: the report's legend."""
    seen: dict[str, str] = {}
    for label in labels:
        for p in parts(label or ""):
            seen.setdefault(p["part"], p["words"])
    return [{"part": k, "words": v} for k, v in seen.items()]


def _close(x: float, y: float) -> bool:
    lo, hi = min(x, y), max(x, y)
    return hi == lo or hi < IMPROVEMENT * lo


def rivals(diagnosis: dict | None) -> list[str]:
    """The other formulations of the evidence that the diagnosed one does not
    beat by the search's own rule (fingerprint.py keeps a change only when it
    at least halves the score, or, within rounding, the ulp distance: factor
    IMPROVEMENT). Where the diagnosed formulation explains the output (score
    <= 1), the rivals explain it too and land within that factor in ulps;
    where it does not, their scores are within that factor of its. A rival
    that differs only in how the formulas are arranged (the parts a root cause
    leaves out: a folded affine, Welford, ...) names the same cause: it makes
    nothing ambiguous and is left out."""
    from crossbn.bugreport.group import root_cause

    if not diagnosis:
        return []
    evidence = diagnosis.get("evidence") or []
    best = next((e for e in evidence if e.get("formulation") == diagnosis.get("formulation")), None)
    if best is None:
        return []
    out = []
    for e in evidence:
        if e is best or root_cause(e.get("formulation") or "") == root_cause(best["formulation"] or ""):
            continue
        try:
            s_best, s_e, u_best, u_e = (float(x) for x in (best["score"], e["score"], best["ulps"], e["ulps"]))
        except (KeyError, TypeError, ValueError):
            continue
        if s_best <= 1.0:
            if s_e <= 1.0 and _close(u_best, u_e):
                out.append(e["formulation"])
        elif _close(s_best, s_e):
            out.append(e["formulation"])
    return out


def settled(label: str, rivals: list[str]) -> dict:
    """What a fingerprint and its rivals say together: the parts all of them
    share (what the outputs establish) and the parts only some have (what
    they cannot settle), each with its words."""
    labels = [label, *rivals]
    sets = [set(x.split(",")) if x and x != CANONICAL else set() for x in labels]
    every = set.intersection(*sets) if sets else set()
    order = [p for x in labels for p in (x.split(",") if x and x != CANONICAL else [])]
    seen: list[str] = list(dict.fromkeys(order))
    return {
        "settled": [{"part": p, "words": words(p)} for p in seen if p in every],
        "unsettled": [{"part": p, "words": words(p)} for p in seen if p not in every],
    }
