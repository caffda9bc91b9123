"""Metrics and verdicts: a backend's observables against the oracle's.

For every observable: the largest absolute and relative error, the largest distance in units in
the last place of the output dtype, and the ratio error / bound from the error-bound model
(tolerance.py), with the position of the worst element. NaN and ±Inf are compared by position
(and sign), never by value. Verdicts, from the observable up to the whole result:

  match         every compared element within its bound (ratio <= 1)
  convention    outside the canonical bound but within that of the backend's documented convention
  deviation     outside both
  nan-mismatch  NaN/Inf where the oracle has none, or the other way round
plus, decided by the runner: error, crash, timeout, unsupported.

Design notes: docs/internals/oracle-and-verdict.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np

from crossbn.backends.base import OBSERVABLES
from crossbn.oracle.tolerance import SAFETY, unit_roundoff
from crossbn.records.results import ObservableRecord
from crossbn.spec.dtypes import MANTISSA_BITS, overflow_threshold, smallest_subnormal
from crossbn.spec.verdicts import SEVERITY, UNJUDGED, Verdict, worst

WORST_ELEMENTS = 5  # worst elements kept per observable
MAX_CHANNELS = 1024  # per-channel ratios kept up to this many channels (a record stays small)


@dataclass
class ObservableResult:
    name: str  # "<step>.<observable>", e.g. "train0.y"
    verdict: str
    ratio: float  # max over elements of error / bound (canonical semantics)
    max_abs: float  # largest |actual - expected|
    max_rel: float  # largest |actual - expected| / |expected| (expected != 0)
    max_ulp: float  # largest error in ulps of the output dtype at the expected value
    where: list[int]  # index of the element with the worst ratio
    expected_at: float  # oracle value there
    actual_at: float  # backend value there
    bound_at: float  # the bound there
    n_over: int  # elements over their bound
    size: int
    dtype: str  # dtype the backend returned
    convention_ratio: float | None = None  # ratio against the declared convention, when it differs
    n_unjudged: int = 0  # elements with no finite bound (ill-conditioned), left out of the ratio
    note: str = ""
    # Kept for observables that do not match (the report shows them; for a
    # match they would only make every record larger):
    worst_elements: list[dict] = field(default_factory=list)  # the WORST_ELEMENTS largest ratios, worst
    # first: {where, expected, actual, bound, ratio} (the report's table)
    per_channel: list[float] | None = None  # max ratio per channel (None: a match, not per-channel, or
    # over MAX_CHANNELS channels); what the report's channel chart draws

    def to_dict(self) -> ObservableRecord:
        return cast(ObservableRecord, asdict(self))


def ulp(values: np.ndarray, dtype_name: str) -> np.ndarray:
    """Spacing of the output dtype at |values| (float64 array)."""
    p = MANTISSA_BITS[dtype_name]
    tiny = smallest_subnormal(dtype_name)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.abs(values)))
    return np.maximum(np.where(np.isfinite(e), np.exp2(e - (p - 1)), tiny), tiny)


def full_bound(model_bound, expected: np.ndarray, out_dtype: str) -> np.ndarray:
    """The bound an element is judged with: the model's, plus the rounding of
    the output itself and the output dtype's smallest subnormal, times SAFETY."""
    u_out, tiny = unit_roundoff(out_dtype), smallest_subnormal(out_dtype)
    e = np.asarray(expected, dtype=np.float64)
    return SAFETY * (np.broadcast_to(model_bound, e.shape) + u_out * np.abs(np.where(np.isfinite(e), e, 0)) + tiny)


def _nonfinite_mismatch(a: np.ndarray, e: np.ndarray) -> str:
    for label, fa, fe in (
        ("NaN", np.isnan(a), np.isnan(e)),
        ("+Inf", np.isposinf(a), np.isposinf(e)),
        ("-Inf", np.isneginf(a), np.isneginf(e)),
    ):
        diff = fa != fe
        if diff.any():
            first = tuple(int(i) for i in np.argwhere(diff)[0])
            return (
                f"{int(diff.sum())} element(s) differ in {label} position; first at {list(first)}: "
                f"expected {e[first]!r}, got {a[first]!r}"
            )
    return ""


def _ratio_stats(a, e, bound):
    finite = np.isfinite(e) & np.isfinite(a)
    with np.errstate(invalid="ignore"):
        err = np.where(finite, np.abs(a - e), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(err == 0, 0.0, err / bound)
    # a NaN bound (no finite conditioning) cannot vouch for a nonzero error
    return err, np.where(np.isnan(ratio), np.inf, ratio)


def _worst_elements(ratio, a, e, bound) -> list[dict]:
    """The WORST_ELEMENTS elements with the largest ratio, worst first (ties by position)."""
    flat = ratio.ravel()
    k = min(WORST_ELEMENTS, flat.size)
    if k == 0:
        return []
    top = np.argpartition(-flat, k - 1)[:k]
    top = top[np.lexsort((top, -flat[top]))]
    out = []
    for i in top:
        at = np.unravel_index(int(i), ratio.shape)
        out.append(
            {
                "where": [int(j) for j in at],
                "expected": float(e[at]),
                "actual": float(a[at]),
                "bound": float(bound[at]),
                "ratio": float(ratio[at]),
            }
        )
    return out


def _per_channel(ratio, channel_axis: int | None) -> list[float] | None:
    """Max ratio per channel: along `channel_axis` of a batch-shaped array, or
    the elements themselves of a per-channel statistic (1-D)."""
    if channel_axis is None or ratio.ndim == 0:
        return None
    if ratio.ndim == 1:
        per = ratio
    elif channel_axis < ratio.ndim:
        per = np.moveaxis(ratio, channel_axis, 0).reshape(ratio.shape[channel_axis], -1).max(axis=1, initial=0.0)
    else:
        return None
    return [float(v) for v in per] if 0 < per.size <= MAX_CHANNELS else None


def _convention_ratio(a, convention, out_dtype: str) -> float:
    """Worst error/bound of `a` against the (expected, model bound) pair of
    the backend's declared convention; inf where NaN/Inf sit elsewhere."""
    ce, cb = convention
    ce = np.asarray(ce, dtype=np.float64)
    ce = np.where(np.isfinite(ce) & (np.abs(ce) >= overflow_threshold(out_dtype)), np.copysign(np.inf, ce), ce)
    if ce.shape != a.shape or _nonfinite_mismatch(a, ce):
        return float("inf")
    cbound = full_bound(cb, ce, out_dtype)  # the output rounding of the value the convention gives
    _, cratio = _ratio_stats(a, ce, np.where(np.isfinite(cbound), cbound, np.inf))
    return float(cratio.max(initial=0.0))


def compare_observable(
    name: str,
    actual: np.ndarray,
    expected: np.ndarray,
    model_bound: np.ndarray,
    convention: tuple[np.ndarray, np.ndarray] | None = None,
    channel_axis: int | None = None,
) -> ObservableResult:
    """`model_bound` is tolerance.model_bounds' entry; `convention` is the
    (expected, bound) pair under the backend's declared convention, if any;
    `channel_axis`, the channel axis of batch-shaped observables (for the
    per-channel ratios)."""
    out_dtype = np.dtype(actual.dtype).name
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    blank: dict[str, Any] = dict(
        name=name,
        ratio=float("inf"),
        max_abs=float("nan"),
        max_rel=float("nan"),
        max_ulp=float("nan"),
        where=[],
        expected_at=float("nan"),
        actual_at=float("nan"),
        bound_at=float("nan"),
        n_over=int(e.size),
        size=int(e.size),
        dtype=out_dtype,
    )
    if a.shape != e.shape:
        return ObservableResult(verdict="deviation", note=f"shape {list(a.shape)}, expected {list(e.shape)}", **blank)
    # The correctly rounded result of a value beyond the output dtype's range
    # is ±Inf (IEEE overflow), so that is what the backend should return.
    overflow = np.isfinite(e) & (np.abs(e) >= overflow_threshold(out_dtype))
    e = np.where(overflow, np.copysign(np.inf, e), e)
    # Where the model has no finite bound (0*inf: a statistic so ill-conditioned
    # that its computed value is unconstrained; or sums past the compute dtype's
    # range) the element is not judged, and the note says how many. Such a
    # statistic may overflow: ±Inf there is not judged either; NaN still is
    # (no formula needs one where the exact value is finite).
    unbounded = ~np.isfinite(full_bound(model_bound, e, out_dtype)) & np.isfinite(e)
    placed = np.where(unbounded & np.isinf(a), e, a)  # `a` with those elements' Inf taken as placed right
    mismatch = _nonfinite_mismatch(placed, e)
    if mismatch:
        why = f" (the exact value of {int(overflow.sum())} element(s) overflows {out_dtype})" if overflow.any() else ""
        # NaN/Inf placed as the backend's documented convention places them
        # (PyTorch keeps its running statistics on an empty batch, where the
        # canonical ones become NaN): a convention difference, not a mismatch.
        conv_ratio = _convention_ratio(placed, convention, out_dtype) if convention is not None else None
        if conv_ratio is not None and conv_ratio <= 1.0:
            at = tuple(int(i) for i in np.argwhere(~((np.isnan(placed) & np.isnan(e)) | (placed == e)))[0])
            return ObservableResult(
                verdict="convention",
                note=f"{mismatch}{why}; as the backend's documented convention predicts",
                **{
                    **blank,
                    "convention_ratio": conv_ratio,
                    "where": list(at),
                    "expected_at": float(e[at]),
                    "actual_at": float(a[at]),
                },
            )
        return ObservableResult(verdict="nan-mismatch", note=mismatch + why, **blank)

    bound = np.where(unbounded, np.inf, full_bound(model_bound, e, out_dtype))
    err, ratio = _ratio_stats(a, e, bound)
    worst_at = np.unravel_index(int(np.nanargmax(ratio)), ratio.shape) if ratio.size else ()
    max_ratio = float(ratio[worst_at]) if ratio.size else 0.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rel = np.where((e != 0) & np.isfinite(e), err / np.abs(e), 0.0)  # NaN/Inf: compared by position
        ulps = err / ulp(e, out_dtype)
    notes = [f"{int(unbounded.sum())} element(s) not judged: {UNJUDGED}"] if unbounded.any() else []
    verdict, conv_ratio = ("match" if max_ratio <= 1.0 else "deviation"), None
    if convention is not None:
        # The backend is held to its own documented semantics first: within
        # them it is a match (or a convention difference, when the canonical
        # bound is exceeded); outside them it deviates, even where it happens
        # to agree with the canonical semantics.
        conv_ratio = _convention_ratio(placed, convention, out_dtype)
        if conv_ratio <= 1.0:
            verdict = "match" if max_ratio <= 1.0 else "convention"
        else:
            verdict = "deviation"
            if max_ratio <= 1.0:
                notes.append("agrees with the canonical semantics, not with the backend's documented convention")
    return ObservableResult(
        name=name,
        verdict=verdict,
        ratio=max_ratio,
        max_abs=float(err.max(initial=0.0)),
        max_rel=float(rel.max(initial=0.0)),
        max_ulp=float(ulps.max(initial=0.0)),
        where=[int(i) for i in worst_at],
        expected_at=float(e[worst_at]) if e.size else float("nan"),
        actual_at=float(a[worst_at]) if a.size else float("nan"),
        bound_at=float(bound[worst_at]) if e.size else float("nan"),
        n_over=int((ratio > 1.0).sum()),
        size=int(e.size),
        dtype=out_dtype,
        convention_ratio=conv_ratio,
        n_unjudged=int(unbounded.sum()),
        note="; ".join(notes),
        worst_elements=[] if verdict == Verdict.MATCH else _worst_elements(ratio, a, e, bound),
        per_channel=None if verdict == Verdict.MATCH else _per_channel(ratio, channel_axis),
    )


@dataclass
class Comparison:
    verdict: str
    observables: dict[str, ObservableResult] = field(default_factory=dict)
    not_exposed: list[str] = field(default_factory=list)  # expected but not returned by the backend
    unexpected: list[str] = field(default_factory=list)  # returned by the backend but not expected
    note: str = ""

    @property
    def worst_observable(self) -> ObservableResult | None:
        bad = [o for o in self.observables.values() if o.verdict != Verdict.MATCH]
        pool = bad or list(self.observables.values())
        return max(pool, key=lambda o: (SEVERITY.index(o.verdict), o.ratio), default=None)


def _dataflow_key(name: str, expected: dict) -> tuple:
    """Order observables as data flows: step by step, and inside a step
    statistics -> normalized output -> running statistics -> gradients."""
    steps = list(dict.fromkeys(k.split(".")[0] for k in expected))
    step, obs = name.split(".", 1)
    return (steps.index(step), OBSERVABLES.index(obs) if obs in OBSERVABLES else len(OBSERVABLES))


def compare(
    actual: dict,
    expected: dict,
    bounds: dict,
    convention: tuple[dict, dict] | None = None,
    channel_axis: int | None = None,
) -> Comparison:
    """Compare every expected observable the backend returned, in dataflow order."""
    result = Comparison(verdict="match")
    for name, exp in sorted(expected.items(), key=lambda kv: _dataflow_key(kv[0], expected)):
        if name not in actual:
            result.not_exposed.append(name)
            continue
        conv = None
        if convention is not None and name in convention[0]:
            conv = (convention[0][name], convention[1][name])
        result.observables[name] = compare_observable(name, actual[name], exp, bounds[name], conv, channel_axis)
    result.unexpected = sorted(set(actual) - set(expected))
    result.verdict = worst(o.verdict for o in result.observables.values())
    # Every step has an output; a backend that returns none of them has not
    # been checked at all, and must not pass.
    missing_y = [n for n in result.not_exposed if n.endswith(".y")]
    if missing_y:
        result.verdict = worst([result.verdict, "deviation"])
        result.note = f"the backend returned no {', '.join(missing_y)}"
    return result
