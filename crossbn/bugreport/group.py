"""Findings grouped by root cause.

A hundred cases that fail on one backend at the same stage, explained by the
same formulation, are one bug upstream, not a hundred. A group is keyed by
(backend, device, first departing stage, root cause); a deviation and a
NaN/Inf mismatch with the same stage and cause are one group. The root cause
is the fingerprint without the details that only say how a formulation is
arranged within its precision (a folded affine, a division instead of a
multiplication by the inverse std, Welford instead of two passes) or that
restate the backend's documented convention (unbiased running variance,
float32 attributes): `compute=float32,affine=folded` and `compute=float32`
are one cause. A finding with no stage or fingerprint (a crash, an error, a
timeout) is keyed by its verdict and the first line of its reason (the
exception). Each group names its smallest case, where a reproducer starts:
fewest elements, then fewest steps, then the case id (deterministic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from crossbn.records.results import judged, ratio_rank
from crossbn.spec.verdicts import FAILING

# crash, error and timeout: keyed by what was raised, not by a stage
_UNEXPLAINED = frozenset({"crash", "error", "timeout"})
# fingerprint parts that do not change the cause (see above)
_ARRANGEMENT = ("affine=folded", "normalize=divide", "variance=welford", "running_var=", "hyperparameters=")


@dataclass
class Group:
    backend: str
    device: str
    kind: str  # "finding" (a deviation or NaN/Inf mismatch), or crash/error/timeout
    stage: str  # first departing stage ("" for crash/error/timeout)
    fingerprint: str  # the root cause (see `root_cause`), or the first line of the reason
    records: list[dict] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.records)

    @property
    def smallest(self) -> dict:
        return min(self.records, key=_size)

    @property
    def worst_ratio(self) -> float | None:
        ratios = [r for r in (judged(rec)[0] for rec in self.records) if r is not None]
        return max(ratios, key=ratio_rank) if ratios else None

    @property
    def verdicts(self) -> list[str]:
        return sorted({r["verdict"] for r in self.records})

    @property
    def dtypes(self) -> list[str]:
        return sorted({(r.get("case") or {}).get("dtype", "") for r in self.records})


def _size(rec: dict) -> tuple:
    case = rec.get("case") or {}
    shape = case.get("shape") or [0]
    return (math.prod(shape), len(case.get("steps") or ()), rec.get("case_id", ""))


def root_cause(formulation: str) -> str:
    """A fingerprint without its arrangement details; "canonical" when none is left."""
    parts = [p for p in formulation.split(",") if p and p != "canonical" and not p.startswith(_ARRANGEMENT)]
    return ",".join(parts) or "canonical"


def key(rec: dict) -> tuple[str, str, str, str, str]:
    if rec["verdict"] in _UNEXPLAINED:
        first = ((rec.get("reason") or "").splitlines() or [""])[0]
        return rec["backend"], rec["device"], rec["verdict"], "", first[:200]
    stage = (rec.get("localization") or {}).get("stage") or ""
    formulation = (rec.get("diagnosis") or {}).get("formulation")
    return rec["backend"], rec["device"], "finding", stage, root_cause(formulation) if formulation else ""


def group(records) -> list[Group]:
    """The findings among `records`, grouped; the largest group first, then by name."""
    groups: dict[tuple, Group] = {}
    for rec in records:
        if rec.get("verdict") not in FAILING:
            continue
        k = key(rec)
        if k not in groups:
            groups[k] = Group(*k)
        groups[k].records.append(rec)
    return sorted(groups.values(), key=lambda g: (-g.count, g.backend, g.device, g.kind, g.stage, g.fingerprint))
