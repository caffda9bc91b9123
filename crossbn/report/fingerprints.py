"""Fingerprints in plain words, and whether one is ambiguous.

A fingerprint is a formulation's label (crossbn/oracle/formulation.py,
`Formulation.label`): `key=value` parts, one per aspect where it differs from
the canonical formulas. `WORDS` says each aspect in words for the report's
tooltips, legend and finding pages; `rivals` names the other formulations
that explain a backend's output about as well as the diagnosed one and
`confidence` what the diagnosis' confidence says (crossbn/verdict/confidence.py).
"""

from __future__ import annotations

from crossbn.verdict.confidence import ties

# key -> (the aspect, {value: words}); a value the table does not list is said as "<aspect>: <value>".
# "{v}" in a value's words is the value itself (a dtype, a number).
WORDS: dict[str, tuple[str, dict[str, str]]] = {
    "compute": ("arithmetic precision", {"*": "all arithmetic done in {v}"}),
    "reduce": ("precision of the reductions", {"*": "reductions (sums) computed in {v}"}),
    "variance": (
        "variance algorithm",
        {
            "one-pass": "variance in one pass, E[x²] − E[x]² (cancels catastrophically when the mean is large)",
            "one-pass-unclamped": "variance in one pass, E[x²] − E[x]², not clamped at 0 (a negative variance "
            "gives NaN)",
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
    "order": (
        "summation order",
        {
            "sequential": "every reduction a running sum in memory order (as XLA on CPU)",
            "pairwise": "reductions summed pairwise",
        },
    ),
    "input": ("input precision", {"*": "the input x (and dy) rounded to {v} before anything else"}),
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


def rivals(diagnosis: dict | None) -> list[str]:
    """The other formulations that explain a backend's output about as well as
    the diagnosed one: the record's `confidence` candidates after the first
    (crossbn/verdict/confidence.py, which a separating case may have narrowed),
    or, for a record without one, the same rule (`ties`) on its evidence."""
    if not diagnosis:
        return []
    conf = diagnosis.get("confidence")
    if isinstance(conf, dict) and isinstance(conf.get("candidates"), list):
        return [c for c in conf["candidates"] if c != diagnosis.get("formulation")]
    return ties(diagnosis)


def confidence(diagnosis: dict | None, rivals: list[str]) -> dict | None:
    """The diagnosis' confidence as a finding page says it: its level, the
    candidates, and the separating case (whether it ran, what it showed);
    for a record without one, the level `rivals` and `explains` give."""
    if not diagnosis or not diagnosis.get("formulation"):
        return None
    conf = diagnosis.get("confidence")
    if not isinstance(conf, dict):
        level = "unexplained" if not diagnosis.get("explains") else "ambiguous" if rivals else "discriminating"
        conf = {"level": level, "candidates": [diagnosis["formulation"], *rivals], "separating": None}
    return {
        "level": conf.get("level"),
        "candidates": conf.get("candidates") or [diagnosis["formulation"]],
        "separating": conf.get("separating"),
        "resolved_from": conf.get("resolved_from"),
        "words": conf.get("words") or "",
    }


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
