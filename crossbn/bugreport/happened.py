"""What happened to the output repro.py checks, measured the way repro.py measures it.

The expected values are the ones the backend is held to (its documented convention where it declares one, as
repro.py's inline formula computes them), the elements counted are those past repro.py's tolerance, and the element
named is the one furthest past its bound, with its own difference and ratio; the largest absolute difference is
named apart when it sits elsewhere. A NaN or an infinity in the wrong place is said in words, not as a ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossbn.bugreport.attempt import mismatch
from crossbn.spec.dtypes import overflow_threshold
from crossbn.verdict.compare import full_bound, ulp


def value(v: float) -> str:
    """A number as the issue writes it: NaN, +Inf, -Inf, or up to 10 significant digits."""
    v = float(v)
    if np.isnan(v):
        return "NaN"
    if np.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return f"{v:.10g}"


@dataclass(frozen=True)
class Element:
    where: list[int]
    actual: float
    expected: float
    diff: float  # |actual - expected| (inf when one side is NaN or infinite and the other not)
    ratio: float  # diff over crossbn's bound there (inf for a NaN/Inf misplaced)
    ulps: float  # diff in units in the last place of the expected value

    @property
    def nonfinite(self) -> bool:
        return not (np.isfinite(self.actual) and np.isfinite(self.expected))

    def words(self) -> str:
        """`NaN where +Inf is expected`, `2.067 where 2.073 is expected`."""
        return f"{value(self.actual)} where {value(self.expected)} is expected"


@dataclass(frozen=True)
class Happened:
    off: int  # elements past repro.py's tolerance (or NaN/Inf misplaced)
    size: int
    furthest: Element  # the element furthest past its bound
    largest: Element  # the element with the largest finite difference


def measure(at) -> Happened | None:
    """`at` (an attempt.Attempt) measured on its target; None when it kept no judged outputs."""
    j, name = at.judged, at.target
    if j is None or name is None or at.tolerance is None or name not in j.actual:
        return None
    exp, bounds = j.convention if j.convention is not None else (j.exp, j.bounds)
    dtype = np.dtype(j.actual[name].dtype).name
    a = np.asarray(j.actual[name], np.float64)
    e = np.asarray(exp[name], np.float64)
    # the correctly rounded result of a value past the dtype's range is ±Inf, as repro.py's rounding gives
    e = np.where(np.isfinite(e) & (np.abs(e) >= overflow_threshold(dtype)), np.copysign(np.inf, e), e)
    if a.shape != e.shape or a.size == 0:
        return None
    bound = full_bound(bounds[name], e, dtype)
    bound = np.where(np.isfinite(bound), bound, np.inf)  # no finite bound: the element is not judged
    off = mismatch(a, e, at.tolerance)
    finite = np.isfinite(a) & np.isfinite(e)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.where(finite, np.abs(a - e), 0.0)
        ratio = np.where(finite, np.where(diff == 0, 0.0, diff / bound), np.where(off, np.inf, 0.0))
        ulps = np.where(finite, diff / ulp(np.where(finite, e, 0.0), dtype), np.inf)

    def element(flat: int) -> Element:
        i = np.unravel_index(flat, a.shape)
        d = float(diff[i]) if finite[i] else float("inf")
        return Element([int(k) for k in i], float(a[i]), float(e[i]), d, float(ratio[i]), float(ulps[i]))

    return Happened(int(off.sum()), int(a.size), element(int(np.argmax(ratio))), element(int(np.argmax(diff))))


def sentence(label: str, target: str, h: Happened) -> str:
    """The issue's "What happened" for a measured target."""
    w = h.furthest
    head = f"{label}'s {target} differs from the expected value in {h.off} of {h.size} elements"
    if w.nonfinite:
        text = f"{head}: at index {w.where}, {w.words()}."
    else:
        text = (
            f"{head}. Furthest past its bound is index {w.where}: {w.words()}, a difference of {w.diff:.3g} "
            f"({w.ratio:.3g} times the bound; {w.ulps:.3g} units in the last place)."
        )
    b = h.largest
    # named apart only when it reads differently: an equal difference at three digits adds nothing
    if b.where != w.where and b.diff > 0 and (w.nonfinite or f"{b.diff:.3g}" != f"{w.diff:.3g}"):
        text += (
            f" The largest difference, {b.diff:.3g}, is at index {b.where} ({b.words()}; {b.ratio:.3g} times "
            f"the bound there)."
        )
    return text
