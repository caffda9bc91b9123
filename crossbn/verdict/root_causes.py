"""Diagnosis per root cause: a run's findings grouped by a cheap signature.

A suite's findings have far fewer causes than members. The first finding of a signature is
diagnosed in full and becomes the group's representative; each later one is *confirmed* against
it: the representative's formulation is simulated once on the member's inputs and, when it
explains the member's outputs (score <= 1), the member takes that diagnosis and the
representative's stage. A member no representative confirms is diagnosed on its own and becomes
another representative (a few per signature at most). Every diagnosis says where it came from
(`source`); `audit` mode also runs the full diagnosis of every confirmed member and records both.

Design notes: docs/internals/oracle-and-verdict.md.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossbn.oracle.formulation import Formulation
from crossbn.records.results import number
from crossbn.spec.verdicts import FAILING, Verdict
from crossbn.verdict.fingerprint import EPS_FLOORS, SCORE_CAP, Trials, base_formulation, score
from crossbn.verdict.localize import DIRECT, first_off

MODES = ("grouped", "each", "audit")
_GRADIENTS = ("dx", "dgamma", "dbeta")
# Representatives kept per signature: a member none of them explains gets its
# own search and joins them, up to this many.
MAX_REPRESENTATIVES = 4


def signature(case, backend: str, device: str, comparison) -> str:
    """What a finding's diagnosis depends on, cheaply: the backend, device and
    dtype; the verdict, the first observable that carries it (in dataflow
    order: where localization starts) and which kinds of forward
    observables carry it; and the case's switches that change which
    formulations are candidates. Which gradients cross their bound is left
    out: with the same cause it varies from seed to seed."""
    wanted = {Verdict.CONVENTION} if comparison.verdict == Verdict.CONVENTION else FAILING
    failing = [(o.name, o.verdict) for o in comparison.observables.values() if o.verdict in wanted]
    kinds = sorted({(name.split(".", 1)[1], v) for name, v in failing} - {(g, v) for g in _GRADIENTS for v in wanted})
    hyper32 = np.float32(case.eps) == case.eps and np.float32(case.momentum) == case.momentum
    trains = case.train_steps > 0
    return json.dumps(
        [
            backend,
            device,
            case.dtype,
            comparison.verdict,
            failing[0],
            kinds,
            case.affine,
            trains and case.track_running_stats,
            case.cumulative,
            case.momentum == 0.5,
            case.frozen,
            case.reduction_size == 0,
            case.eps < max(EPS_FLOORS),
            bool(hyper32),
            case.running_stats,
            bool(case.specials),
            list(case.options),
        ],
        default=str,
    )


@dataclass
class Representative:
    case_id: str
    pytest_id: str
    formulation: Formulation
    localization: dict
    explains: bool
    complete: bool  # its search tried every change (a large case's budget can stop it short)
    score: float
    confidence: dict | None = None  # confidence.py's, which its confirmed members carry


@dataclass
class RootCauses:
    """The representatives of one process's findings (a backend's tests run in
    one process under xdist, so each group forms where its members are)."""

    mode: str = "grouped"
    groups: dict[str, list[Representative]] = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"diagnosis mode {self.mode!r}: one of {', '.join(MODES)}")

    def representatives(self, sig: str) -> list[Representative]:
        return [] if self.mode == "each" else self.groups.get(sig, [])

    def add(self, sig: str, case, diagnosis: dict, localization: dict, semantics: dict) -> None:
        """A finding diagnosed on its own joins its group's representatives."""
        reps = self.groups.setdefault(sig, [])
        if len(reps) < MAX_REPRESENTATIVES:
            f = dataclasses.replace(base_formulation(case, **semantics), **diagnosis["changes"])
            reps.append(
                Representative(
                    case.id,
                    case.pytest_id,
                    f,
                    localization,
                    bool(diagnosis["explains"]),
                    bool(diagnosis.get("search_complete", True)),
                    number(diagnosis["score"]),
                    diagnosis.get("confidence"),
                )
            )


def confirm(
    rep: Representative, case, inputs, actual: dict, exact: dict, bounds: dict, traces, semantics: dict
) -> dict | None:
    """The member's diagnosis taken from `rep` (one formulation simulated), or
    None when rep's formulation does not confirm the member (see above)."""
    t = Trials(case, inputs, actual, exact, bounds, traces)(rep.formulation)
    canonical = score(actual, exact, exact, bounds)
    margin = canonical / t["score"] if t["score"] > 0 else float("inf")
    if rep.explains and t["score"] > 1.0:
        return None
    if not rep.explains and not (rep.complete and rep.score >= SCORE_CAP and t["score"] >= SCORE_CAP):
        return None
    base = base_formulation(case, **semantics)
    f = rep.formulation
    return {
        "formulation": f.label(),
        "description": f.describe(case, base),
        "changes": f.changes(base),
        "documented": base.describe(case),
        "explains": rep.explains,
        "score": t["score"],
        "ulps": t["ulps"],
        "canonical_score": canonical,
        "margin": margin,
        "runner_up": None,
        "evidence": [{k: v for k, v in t.items() if k != "_f"}],
        "searched": 1,
        "search_complete": True,
        "source": _source(rep),
    } | ({"confidence": rep.confidence} if rep.confidence is not None else {})


def confirmed_localization(rep: Representative, case, comparison) -> dict:
    """The member's own first departing observable, with the representative's
    stage where that stage came from probes or the fit (their reruns are what
    confirmation saves); an observable read directly is the member's own."""
    first = first_off(comparison, comparison.verdict)
    step, obs = first.name.split(".", 1)
    out = {
        "stage": rep.localization.get("stage"),
        "step": step,
        "observable": first.name,
        "how": rep.localization.get("how"),
        "probes": [],
        "source": _source(rep),
    }
    if obs in DIRECT:
        out.update(stage=DIRECT[obs], how="observed")
    return out


OWN = {"how": "own"}


def _source(rep: Representative) -> dict:
    return {"how": "confirmed", "representative": rep.case_id, "representative_test": rep.pytest_id}


def audit(records) -> dict:
    """An `audit` run's confirmed findings against their own full diagnosis:
    counts, and every difference with its reason."""
    out: dict[str, Any] = {"findings": 0, "own": 0, "confirmed": 0, "equal": 0, "differences": []}
    for rec in records:
        diag = rec.get("diagnosis")
        if not diag:
            continue
        out["findings"] += 1
        if diag.get("source", OWN).get("how") != "confirmed":
            out["own"] += 1
            continue
        out["confirmed"] += 1
        own = diag.get("audit")
        if own is None:
            out["differences"].append(
                _difference(
                    rec,
                    "no own diagnosis recorded (not an audit run)",
                    ["no own diagnosis recorded (not an audit run)"],
                )
            )
            continue
        stage = (rec.get("localization") or {}).get("stage")
        reasons, kinds = [], []
        if own["formulation"] != diag["formulation"]:
            ours, theirs = number(diag["score"]), number(own["score"])
            if not diag["explains"]:
                kinds.append("nothing explains it: the closest formulations differ")
                reasons.append(
                    f"nothing tried explains it: the representative's closest formulation, "
                    f"{diag['formulation']} ({ours:.3g}), against the own search's closest, "
                    f"{own['formulation']} ({theirs:.3g})"
                )
            elif own["explains"]:
                kinds.append("both formulations explain it within rounding: the own search ranked the other first")
                reasons.append(
                    f"both explain the outputs within rounding (confirmed {ours:.3g}, own {theirs:.3g}), "
                    f"the own search ranked {own['formulation']} first by ulp distance"
                )
            else:
                kinds.append("the representative's formulation explains it: the own greedy search did not reach it")
                reasons.append(
                    f"the representative's {diag['formulation']} explains the outputs ({ours:.3g}), the "
                    f"own greedy search stopped at {own['formulation']} ({theirs:.3g})"
                )
        if own["stage"] != stage:
            kinds.append("stage lent by the representative: the own probes or fit say another")
            reasons.append(
                f"stage {stage} taken from the representative (its probes and fit not rerun), "
                f"the own localization says {own['stage']}"
            )
        if reasons:
            out["differences"].append(_difference(rec, "; ".join(reasons), kinds))
        else:
            out["equal"] += 1
    return out


def _difference(rec: dict, reason: str, kinds: list[str]) -> dict:
    diag = rec["diagnosis"]
    return {
        "backend": rec["backend"],
        "case": rec["pytest_id"],
        "representative": diag["source"].get("representative_test"),
        "formulation": diag["formulation"],
        "own": (diag.get("audit") or {}).get("formulation"),
        "reason": reason,
        "kinds": kinds,
    }
