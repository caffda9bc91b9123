"""Memory limits: refuse a case up front, recycle a worker that grew.

`Limits.parse` reads --crossbn-max-case-bytes and --crossbn-worker-max-mb (`auto`: a share of the RAM);
`Limits.refuse(case)` refuses a case whose `estimate` (`BYTES_PER_ELEMENT_STEP` bytes per element per step) is
over the limit, with its estimate, rather than let the kernel kill it half way. A backend's worker past its limit
is stopped and the next request starts a fresh one (runner.BackendWorker).

Calibration and design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

BYTES_PER_ELEMENT_STEP = 256
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class LimitError(ValueError):
    """A limit option that is not a size; the message names the option."""


def physical_memory() -> int | None:
    """The machine's RAM in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _workers_at_once() -> int:
    """How many pytest processes run cases at the same time (xdist sets it)."""
    try:
        return max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    except ValueError:
        return 1


def _size(text: str, option: str, unit: int) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise LimitError(
            f"{option}: {text!r} is not a size (a number, optionally with K, M, G or T; 'auto'; or 0 for no limit)"
        )
    value = float(m.group(1)) * (_UNITS[m.group(2).upper()] if m.group(2) else unit)
    if not math.isfinite(value):
        raise LimitError(f"{option}: {text!r} is too large")
    return int(value)


@dataclass(frozen=True)
class Limits:
    max_case_bytes: int | None  # refuse a case estimated above this; None: no limit
    worker_max_bytes: int | None  # recycle a backend's worker holding more than this; None: never

    @classmethod
    def parse(cls, max_case: str, worker_max_mb: str) -> Limits:
        ram, share = physical_memory(), _workers_at_once()
        if str(max_case).strip().lower() == "auto":
            case = None if ram is None else ram // 2 // share
        else:
            case = _size(max_case, "--crossbn-max-case-bytes", 1) or None
        if str(worker_max_mb).strip().lower() == "auto":
            worker = None if ram is None else ram // 4 // share
        else:
            worker = _size(worker_max_mb, "--crossbn-worker-max-mb", 2**20) or None
        return cls(case, worker)

    def refuse(self, case) -> str | None:
        """Why `case` is not run here (its estimate is over the limit), or None."""
        if self.max_case_bytes is None:
            return None
        need = estimate(case)
        if need <= self.max_case_bytes:
            return None
        return (
            f"refused: estimated {human(need)} for {math.prod(case.shape):,} elements x {steps(case)} step(s) "
            f"({BYTES_PER_ELEMENT_STEP} bytes per element per step), over --crossbn-max-case-bytes "
            f"{human(self.max_case_bytes)}"
        )


def steps(case) -> int:
    return case.train_steps + (1 if case.eval_step else 0)


def estimate(case) -> int:
    """Bytes the case needs at its peak, the crossbn process and the backend's worker together."""
    return math.prod(case.shape) * max(1, steps(case)) * BYTES_PER_ELEMENT_STEP


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def seconds(text: str, option: str = "--budget") -> float:
    """'90s', '10m', '1h' or a plain number of seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m:
        raise ValueError(f"{option} {text!r}: expected a duration like 90s, 10m or 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
