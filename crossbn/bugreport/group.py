"""Findings grouped by root cause.

A hundred cases explained by the same formulation on one backend are one bug
upstream, not a hundred. A group is keyed by (backend, device, root cause),
where a fingerprint that explains the outputs is the cause wherever it first
shows (one case's magnitudes reveal it at the batch mean, another's only at
the normalized values); the first departing stage joins the key only where
no formulation explains the finding or the explanation is the canonical one.
The root cause is the fingerprint without the details that only arrange a
formulation within its precision (folded affine, division, Welford, summation order) or
restate the backend's documented convention: `compute=float32,affine=folded`
is `compute=float32` (`root_cause`, crossbn/verdict/confidence.py). A crash, error or timeout is keyed by its verdict and
the first line of its reason. Each group names its smallest case: fewest
elements, then fewest steps, then the case id. The HTML report's root-cause
pages group by the same `key`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from crossbn.records.results import judged, ratio_rank
from crossbn.spec.verdicts import FAILING
from crossbn.verdict.confidence import root_cause
from crossbn.verdict.localize import STAGES

# crash, error and timeout: keyed by what was raised, not by a stage
_UNEXPLAINED = frozenset({"crash", "error", "timeout"})


@dataclass
class Group:
    backend: str
    device: str
    kind: str  # "finding" (a deviation or NaN/Inf mismatch), or crash/error/timeout
    keyed_stage: str  # the stage in the key ("" where an explained cause or an exception keys it)
    fingerprint: str  # the root cause (see `root_cause`), or the first line of the reason
    records: list[dict] = field(default_factory=list)

    @property
    def stage(self) -> str:
        """The first departing stage, or the members' stages (dataflow order) where they differ."""
        if self.keyed_stage or self.kind != "finding":
            return self.keyed_stage
        stages = {(r.get("localization") or {}).get("stage") or "" for r in self.records} - {""}
        return ", ".join(sorted(stages, key=lambda s: (STAGES.index(s) if s in STAGES else 99, s)))

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


def key(rec: dict) -> tuple[str, str, str, str, str]:
    """(backend, device, kind, stage, root cause): what makes two findings one bug (see above)."""
    if rec["verdict"] in _UNEXPLAINED:
        first = ((rec.get("reason") or "").splitlines() or [""])[0]
        return rec["backend"], rec["device"], rec["verdict"], "", first[:200]
    stage = (rec.get("localization") or {}).get("stage") or ""
    diagnosis = rec.get("diagnosis") or {}
    formulation = diagnosis.get("formulation")
    cause = root_cause(formulation) if formulation else ""
    if cause not in ("", "canonical") and diagnosis.get("explains"):
        stage = ""  # an explained cause: the stage only says where this case's numbers first show it
    return rec["backend"], rec["device"], "finding", stage, cause


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
    return sorted(groups.values(), key=lambda g: (-g.count, g.backend, g.device, g.kind, g.keyed_stage, g.fingerprint))
