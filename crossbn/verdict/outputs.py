"""What a backend hands back, checked before anything is compared.

A backend that returns arrays of the wrong shape or dtype is broken, not
inaccurate: its result is an `error` verdict naming the observable, never a
deviation with a meaningless error/bound ratio. And within one framework, the
outputs on a GPU are compared with the same framework's CPU outputs — a
comparison of its own, next to the comparison with the oracle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crossbn.backends.base import OBSERVABLES
from crossbn.spec.dtypes import NAMES

# Intermediates come back in whatever float dtype the framework computed
# them in (PyTorch keeps half-precision batch statistics in float32; Keras on
# JAX computes a float64 layer's in float32): their values are judged, their
# dtype is information. The layer's outputs must be in the case dtype.
_ANY_FLOAT = {"batch_mean", "batch_var", "invstd"}


def output_problem(case, observables: dict, expected: dict) -> str | None:
    """None, or what is wrong with the arrays a backend returned."""
    problems = []
    for name, arr in observables.items():
        step, _, obs = name.partition(".")
        if obs not in OBSERVABLES or step not in case.steps:
            continue  # reported as 'unexpected' by the comparison; harmless
        dtype = getattr(arr, "dtype", None)
        dname = np.dtype(dtype).name if dtype is not None else type(arr).__name__
        if not isinstance(arr, np.ndarray) or dname not in NAMES:
            problems.append(f"{name} is {dname}, not a floating-point array")
            continue
        if name in expected and arr.shape != np.shape(expected[name]):
            problems.append(f"{name} has shape {list(arr.shape)}, expected {list(np.shape(expected[name]))}")
        if dname != case.dtype and obs not in _ANY_FLOAT:
            problems.append(f"{name} is {dname}, expected {case.dtype}")
    return "; ".join(problems) or None


def without_gradients(expected: dict, bounds: dict) -> tuple[dict, dict]:
    keep = [k for k in expected if k.split(".", 1)[1] not in ("dx", "dgamma", "dbeta")]
    return {k: expected[k] for k in keep}, {k: bounds[k] for k in keep}


def compare_runs(out: dict, other: dict, bounds: dict, name: str, against: str) -> dict:
    """One framework's outputs against another run of it: on a GPU against
    its CPU path (`against` "cpu"), or one release against another installed
    beside it (`against` the other backend's name).

    Each of the two is allowed its error bound against the exact result, so
    two correct computations differ by at most the sum of their bounds: the
    ratio here is |out - other| / (2 x bound). `bitwise` says the outputs
    are identical, bit for bit."""
    from crossbn.spec.verdicts import worst
    from crossbn.verdict.compare import compare_observable

    observables: dict[str, dict[str, Any]] = {}
    bitwise = True
    for key in sorted(set(out) & set(other) & set(bounds)):
        a, b = out[key], other[key]
        if a.shape != b.shape:
            bitwise = False
            observables[key] = {
                "verdict": "deviation",
                "note": f"{name} {a.dtype}{list(a.shape)} vs {against} {b.dtype}{list(b.shape)}",
            }
            continue
        note = ""
        if a.dtype != b.dtype:  # e.g. an intermediate one release returns in float32, the other in float64
            note = f"{name} returns {a.dtype}, {against} {b.dtype}; values compared in float64"
            a, b = a.astype(np.float64), b.astype(np.float64)
        same = not note and np.array_equal(a.view(np.uint8), b.view(np.uint8))
        bitwise &= same
        r = compare_observable(key, a, b, 2.0 * np.asarray(bounds[key]))
        observables[key] = {
            "verdict": "deviation" if note else r.verdict,
            "ratio": r.ratio,
            "max_abs": r.max_abs,
            "max_ulp": r.max_ulp,
            "where": r.where,
            "bitwise": bool(same),
            "note": "; ".join(n for n in (note, r.note) if n),
        }
    verdict = worst(o["verdict"] for o in observables.values())
    return {
        "against": against,
        "verdict": "bitwise"
        if bitwise and observables
        else {"match": "agree", "deviation": "disagree"}.get(verdict, verdict),
        "observables": observables,
    }
