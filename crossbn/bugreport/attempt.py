"""Run one case on one backend, the way a run does, and say whether a finding shows.

Shrinking, fuzzing and the standalone reproducer all ask the same question of
a case: what is its result record (`judge.judge`, the whole pipeline), and
which public output shows it most strongly to a plain "|actual - expected| >
tolerance" check, the one `repro.py` makes? A `Lab` holds one backend's
worker process, started once and reused for every case it is asked about.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from crossbn.records.results import ratio_rank
from crossbn.verdict.compare import full_bound

# The outputs a reproducer compares: what every framework returns publicly
# (batch_mean / invstd are crossbn's probes into the kernel, not API).
PUBLIC = ("y", "running_mean", "running_var", "dbeta", "dgamma", "dx")
DEVICES = ("cpu", "cuda")  # as `crossbn run --devices` names them
_UNEXPLAINED = ("crash", "error", "timeout")


class LabError(ValueError):
    """An unknown backend, device or option; the message names it."""


@dataclass
class Attempt:
    case: object  # the Case that was run
    record: dict  # its result record
    inputs: dict | None = None  # the generated inputs (None when nothing ran)
    target: str | None = None  # the public output repro.py checks: the one furthest past its bound
    tolerance: object = None  # crossbn's per-element bounds for `target` (an array), or None
    judged: object = None  # the outputs held against the oracle (judge.Judged), when they came back
    strength: float | None = None  # `target`'s error/bound ratio (inf for a NaN/Inf mismatch)

    @property
    def signature(self) -> tuple[str, str]:
        return signature(self.record)


def signature(record: dict) -> tuple[str, str]:
    """What makes two results the same finding: the verdict and the first
    departing stage; for a crash, error or timeout, the verdict and the kind
    of exception (the first line of the reason up to its first colon)."""
    verdict = record.get("verdict", "")
    if verdict in _UNEXPLAINED:
        first = ((record.get("reason") or "").splitlines() or [""])[0]
        return verdict, first.split(":", 1)[0][:120]
    return verdict, (record.get("localization") or {}).get("stage") or ""


def mismatch(actual: np.ndarray, expected: np.ndarray, tolerance: float) -> np.ndarray:
    """Elements where actual and expected disagree: a NaN or an infinity on
    one side only (or infinities of opposite sign), or a finite difference
    past the tolerance. `repro.py` makes exactly this check."""
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(a) & np.isfinite(e)
        off = np.where(finite, np.abs(a - e) > tolerance, False)
    return off | (np.isnan(a) != np.isnan(e)) | (np.isposinf(a) != np.isposinf(e)) | (np.isneginf(a) != np.isneginf(e))


def visible(judged) -> tuple[str | None, np.ndarray | None, float | None]:
    """(output, its bounds, its error/bound ratio): of the public outputs that
    depart from the expectation the backend is held to (its documented
    convention, where it declares one) by more than crossbn's per-element
    bound somewhere, the one furthest past its bound (the first in step order
    on a tie); (None, None, None) when none does. Internal stages (batch_mean,
    invstd) are crossbn's probes, not a user's outputs, and never the target.
    Each bound is rounded up to three significant digits, as repro.py writes
    it; the ratio is the verdict's own (a NaN/Inf mismatch ranks as inf)."""
    exp, bounds = judged.convention if judged.convention is not None else (judged.exp, judged.bounds)
    found: list[tuple[str, np.ndarray, float]] = []
    for step in judged.case.steps:
        for what in PUBLIC:
            name = f"{step}.{what}"
            if name not in exp or name not in judged.actual:
                continue
            tol = round_up(full_bound(bounds[name], exp[name], np.dtype(judged.actual[name].dtype).name))
            if mismatch(judged.actual[name], exp[name], tol).any():
                found.append((name, tol, _ratio(judged, name)))
    if not found:
        return None, None, None
    return max(found, key=lambda t: ratio_rank(t[2]))  # max keeps the first of equals


def _ratio(judged, name: str) -> float:
    """An output's error/bound ratio under the backend's declared semantics (results.observable_ratio)."""
    o = judged.comparison.observables.get(name) if judged.comparison is not None else None
    if o is None:
        return float("inf")
    return float(o.convention_ratio if o.convention_ratio is not None else o.ratio)


def round_up(bound: np.ndarray) -> np.ndarray:
    """Bounds rounded up to three significant digits (never below the bound)."""
    b = np.asarray(bound, np.float64)
    out = np.array([float(f"{v:.2e}") for v in b.ravel()]).reshape(b.shape)
    above = np.array([float(f"{v * (1 + 1e-3):.2e}") for v in b.ravel()]).reshape(b.shape)
    return np.where(out < b, np.nextafter(above, np.inf), out)


class Lab:
    """One backend's worker, kept warm across the cases it is asked to run."""

    def __init__(
        self, backend: str, device: str = "cpu", backend_modules: tuple[str, ...] = (), timeout: float | None = None
    ):
        from crossbn.backends import BackendError, choose, discover, instantiate
        from crossbn.execution.runner import DEFAULT_TIMEOUT, WorkerPool

        modules = tuple(backend_modules) + tuple(
            p for p in os.environ.get("CROSSBN_BACKEND_MODULE", "").split(os.pathsep) if p
        )
        try:
            specs, backends = instantiate(choose(backend, discover(modules)), discover(modules))
        except BackendError as e:
            raise LabError(str(e)) from e
        if len(backends) != 1:
            raise LabError(f"name one backend, got {backend!r}")
        if device not in DEVICES:
            raise LabError(f"unknown device {device!r}; known: {', '.join(DEVICES)}")
        ((self.name, self.backend),) = backends.items()
        self.device, self.modules = device, modules
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self.pool = WorkerPool(specs, backends)
        self.runs = 0

    def require(self) -> Lab:
        """This lab, or a LabError when its framework is not installed here (a
        command's usage check: a run would only record every case unsupported)."""
        missing = self.backend.available()
        if missing is not None:
            raise LabError(f"backend unavailable: {missing}")
        return self

    def attempt(self, case) -> Attempt:
        from crossbn.verdict.judge import judge

        keep: dict = {}
        self.runs += 1
        record = judge(case, self.name, self.backend, self.device, self.pool, self.timeout, keep=keep)
        target = tolerance = strength = None
        if "judged" in keep and not keep["judged"].broken:
            target, tolerance, strength = visible(keep["judged"])
        return Attempt(case, record, keep.get("inputs"), target, tolerance, keep.get("judged"), strength)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
