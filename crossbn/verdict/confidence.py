"""How far a fingerprint can be trusted: discriminating, ambiguous or unexplained.

`assess` adds `confidence` to a diagnosis (fingerprint.py): "unexplained" when no formulation
reproduces the outputs (score > 1); "ambiguous" when others explain them about as well (`ties`,
the rule the report shows too); else "discriminating". For an ambiguous one it derives a few
variations of the case, simulates every candidate on each, and runs the variation that sets them
furthest apart (relative to the error model) on the same backend when that is cheap; the
candidates that still explain it are kept, and one left resolves the diagnosis to it.

Design notes: docs/localization.md, "Confidence".
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any

from crossbn.oracle import inputs as inputs_mod
from crossbn.oracle.expected import simulate as simulate_oracle
from crossbn.oracle.formulation import Formulation, simulate_with_spread
from crossbn.oracle.tolerance import model_bounds, unit_roundoff
from crossbn.spec.case import Case, CaseError
from crossbn.verdict.fingerprint import IMPROVEMENT, Trials, base_formulation, score

# A separating case runs on the backend only when it is cheap: at most this many elements per
# step, and at most MAX_CANDIDATES candidates (each simulated twice on every variation: about
# 0.1 s of NumPy per candidate at this size).
PROBE_ELEMENTS = 100_000
MAX_CANDIDATES = 8
# Two candidates are told apart by a variation when each one's output lies this many error
# bounds (widened by the other's rounding spread) from the other's: the search's own factor.
SEPARATED = IMPROVEMENT
# fingerprint parts that only arrange a formulation within its precision, or restate a backend's
# documented convention: a rival that differs from the best only in them names the same cause
ARRANGEMENT = (
    "affine=folded",
    "normalize=divide",
    "variance=welford",
    "order=",
    "running_var=",
    "hyperparameters=",
)

RunProbe = Callable[[str, Case, dict], "dict | str"]


def root_cause(formulation: str) -> str:
    """A fingerprint without its arrangement details; "canonical" when none is left."""
    parts = [p for p in formulation.split(",") if p and p != "canonical" and not p.startswith(ARRANGEMENT)]
    return ",".join(parts) or "canonical"


def formulation_of(label: str) -> Formulation:
    """A Formulation from its label (`compute=float16,running_var=unbiased`)."""
    kinds: dict[str, Any] = {f.name: type(f.default) for f in dataclasses.fields(Formulation)}
    values: dict[str, Any] = {}
    for part in label.split(","):
        name, _, value = part.partition("=")
        if name not in kinds:
            continue  # "canonical", or an aspect this release does not know
        kind = kinds[name]
        values[name] = value == "True" if kind is bool else kind(value)
    return Formulation(**values)


def _close(x: float, y: float) -> bool:
    lo, hi = min(x, y), max(x, y)
    return hi == lo or hi < IMPROVEMENT * lo


def ties(diagnosis: dict | None) -> list[str]:
    """The other formulations of the evidence that the diagnosed one does not
    beat by the search's own rule (it keeps a change only when it at least
    halves the score, or, within rounding, the ulp distance). Where the
    diagnosed formulation explains the output (score <= 1), a tie explains it
    too and lands within that factor in ulps; where it does not, its score is
    within that factor. One that differs only in arrangement (`root_cause`)
    names the same cause and is left out."""
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


def _said(changes: dict) -> str:
    return ", ".join(f"{k}={tuple(v) if isinstance(v, (list, tuple)) else v}" for k, v in changes.items())


def variations(case: Case) -> list[tuple[str, Case]]:
    """A few cases derived from `case` that set common formulations apart: a
    large mean offset (one-pass variance, reductions' precision and order), a
    variance near a small eps (where eps goes, eps clamping), a larger batch
    (longer sums), the affine transform on; and the larger batch with each of
    the first two; each with its changed fields in words."""
    half = case.dtype in ("float16", "bfloat16")
    singles: list[dict[str, Any]] = []
    # an offset where E[x²]−E[x]² cancels to rounding noise in the case's accumulator precision
    # (its sign then differs: clamped or not), and a moderate one where it only loses digits
    extreme = float(2 ** round(math.log2(4 / math.sqrt(unit_roundoff("float32" if half else case.dtype)))))
    for offset in (30.0 if half else 1000.0, extreme):
        if abs(case.offset_ratio) < offset:  # (of a unit spread: near eps, eps would hide the variance)
            singles.append(
                {"offset_ratio": offset, **({"distribution": "normal"} if case.distribution == "near_eps" else {})}
            )
    if not (case.distribution == "near_eps" and case.eps <= 1e-6):
        singles.append({"distribution": "near_eps", "eps": 1e-6, "offset_ratio": 0.0})
    size = math.prod(case.shape)
    factor = min(8, PROBE_ELEMENTS // size) if size else 0
    larger = {"shape": (case.shape[0] * factor, *case.shape[1:])} if factor >= 2 else None
    if not case.affine:
        singles.append({"affine": True})
    combos = [*singles, *([larger] if larger else [])]
    if larger:  # longer sums with a moderate offset, or near eps
        combos += [{**larger, **s} for s in singles if s.get("offset_ratio", 0.0) < extreme and "affine" not in s]
    out = []
    for changes in combos:
        try:
            out.append((_said(changes), dataclasses.replace(case, **changes)))
        except CaseError:
            continue  # a variation this case cannot have
    return out


def _lowest(case: Case, formulations) -> str:
    """The lowest precision any of `formulations` computes in: the loosest error model among them."""
    # (not the input's precision: rounding the input is one exact operation, fingerprint._precision)
    names = [d for f in formulations for d in (f.compute_dtype(case), f.reduce) if d]
    return max(names, key=unit_roundoff)


def _pairs_apart(case: Case, formulations: list[Formulation], names) -> tuple[int, float]:
    """(how many pairs of `formulations` the case sets apart, the smallest
    separation of any pair) in error bounds of the loosest precision among
    them, each widened by the other's rounding spread."""
    inputs = inputs_mod.generate(case)
    exact, traces = simulate_oracle(case, inputs)
    model = model_bounds(case, traces, compute_dtype=_lowest(case, formulations))
    kinds = {n.split(".", 1)[1] for n in names}
    bounds = {k: v for k, v in model.items() if k.split(".", 1)[1] in kinds}
    sims = [simulate_with_spread(case, inputs, f) for f in formulations]
    cache: dict = {}
    apart, smallest = 0, math.inf
    for (ta, sa), (tb, sb) in itertools.combinations(sims, 2):
        sep = min(score(ta, tb, exact, bounds, sb, cache), score(tb, ta, exact, bounds, sa, cache))
        apart += sep > SEPARATED
        smallest = min(smallest, sep)
    return apart, smallest


def _run_separating(case: Case, candidates: list[str], names, run_probe: RunProbe) -> tuple[dict, list[str]]:
    """Choose the variation that sets the candidates furthest apart and run
    it: (what `separating` records, the candidates that still explain)."""
    formulations = [formulation_of(c) for c in candidates]
    scored = [(_pairs_apart(v, formulations, names), said, v) for said, v in variations(case)]
    if not scored:
        return {"case": None, "ran": False, "result": "no variation of this case could be derived"}, candidates
    (apart, smallest), said, chosen = max(scored, key=lambda t: t[0])
    if apart == 0:
        return {
            "case": None,
            "ran": False,
            "result": f"no variation tried sets them apart (the best, {said}, by {smallest:.3g} bounds)",
        }, candidates
    base = {"case": said, "case_id": chosen.id, "pairs_apart": apart}
    inputs = inputs_mod.generate(chosen)
    outputs = run_probe("separating", chosen, inputs)
    if isinstance(outputs, str):
        return {**base, "ran": False, "result": outputs}, candidates
    exact, traces = simulate_oracle(chosen, inputs)
    model = model_bounds(chosen, traces)
    # (candidates that explained the case itself, only compared with each other: no search guard)
    trial = Trials(
        chosen, inputs, outputs, exact, {k: model[k] for k in model if k in outputs}, traces, plausible=False
    )
    rows = sorted(
        ({k: v for k, v in trial(f).items() if k != "_f"} for f in formulations),
        key=lambda t: (max(t["score"], 1.0), t["ulps"]),
    )
    scores = {r["formulation"]: {"score": r["score"], "ulps": r["ulps"]} for r in rows}
    if rows[0]["score"] > 1.0:
        result = "none of the candidates explains it"
        return {**base, "ran": True, "result": result, "scores": scores, "kept": candidates}, candidates
    kept = [rows[0]["formulation"], *ties({"formulation": rows[0]["formulation"], "evidence": rows})]
    kept = [c for c in candidates if c in kept]  # in the original order, best first
    result = f"explained by {' and '.join(kept)}" + ("" if len(kept) > 1 else " only")
    return {**base, "ran": True, "result": result, "scores": scores, "kept": kept}, kept


def _cheap(case: Case, candidates: list[str]) -> str | None:
    """Why a separating case is not looked for, or None when it is cheap."""
    if len(candidates) > MAX_CANDIDATES:
        return f"{len(candidates)} candidates (more than {MAX_CANDIDATES})"
    if math.prod(case.shape) > PROBE_ELEMENTS:
        return f"a case of {math.prod(case.shape):,} elements per step (more than {PROBE_ELEMENTS:,})"
    return None


def confidence(case: Case, names, diagnosis: dict, run_probe: RunProbe | None) -> dict:
    """The diagnosis' confidence (see the module's docstring). `names`: the
    observables the backend returned; `run_probe(name, case, inputs)`: the
    backend's compared outputs for a derived case, or why there are none
    (None: no probe may run)."""
    label = diagnosis["formulation"]
    candidates = [label, *ties(diagnosis)]
    if not diagnosis.get("explains"):
        return {
            "level": "unexplained",
            "candidates": candidates,
            "separating": None,
            "words": f"no formulation tried reproduces the outputs within rounding (the closest, {label}, "
            f"scores {float(diagnosis['score']):.3g})",
        }
    if len(candidates) == 1:
        return {
            "level": "discriminating",
            "candidates": candidates,
            "separating": None,
            "words": f"{label} explains the outputs and no other formulation tried comes as close",
        }
    why = _cheap(case, candidates) if run_probe is not None else "no backend to run it on"
    separating: dict | None = None
    kept = candidates
    if why is None and run_probe is not None:
        separating, kept = _run_separating(case, candidates, names, run_probe)
    alike = " and ".join(candidates)
    if len(kept) == 1:
        return {
            "level": "discriminating",
            "candidates": kept,
            "separating": separating,
            "resolved_from": label,
            "words": f"{alike} explain the outputs alike; a separating case ({(separating or {}).get('case')}) run on the "
            f"backend is explained by {kept[0]} only",
        }
    if why or separating is None:
        tail = f"no separating case was run: {why}"
    elif not separating["ran"]:
        tail = f"no separating case was run: {separating['result']}" + (
            f" ({separating['case']})" if separating["case"] else ""
        )
    else:
        tail = f"a separating case ({separating['case']}) ran: {separating['result']}"
    return {
        "level": "ambiguous",
        "candidates": kept,
        "separating": separating,
        # the separating case can rule out the search's first pick and leave others
        **({"resolved_from": label} if kept[0] != label else {}),
        "words": f"{alike} explain the outputs alike; {tail}",
    }


def assess(case: Case, actual: dict, diagnosis: dict, run_probe: RunProbe | None, semantics: dict) -> dict:
    """`diagnosis` with its `confidence`; where a separating case rules out
    the search's first pick, the diagnosis names the best candidate left (with
    its own evidence on this case) and `confidence["resolved_from"]` the
    formulation the search ranked first."""
    conf = confidence(case, list(actual), diagnosis, run_probe)
    winner = conf["candidates"][0]
    if winner != diagnosis["formulation"]:
        row = next(e for e in diagnosis["evidence"] if e["formulation"] == winner)
        base = base_formulation(case, **semantics)
        f = formulation_of(winner)
        canonical = float(diagnosis["canonical_score"])
        diagnosis = {
            **diagnosis,
            "formulation": winner,
            "description": f.describe(case, base),
            "changes": f.changes(base),
            "explains": row["score"] <= 1.0,
            "score": row["score"],
            "ulps": row["ulps"],
            "margin": canonical / row["score"] if row["score"] > 0 else float("inf"),
        }
    return {**diagnosis, "confidence": conf}
