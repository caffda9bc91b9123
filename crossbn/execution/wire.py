"""Arrays across process boundaries without pickle.

execnet channels carry only plain values (str, bytes, numbers, lists, dicts),
so an array travels as `[dtype name, shape, raw bytes]`. The dtype is named,
not pickled; bfloat16 comes back through ml_dtypes. This module must stay
importable with nothing but NumPy (and ml_dtypes when bfloat16 is used),
because worker processes in other interpreters import it too.
"""

from __future__ import annotations

import numpy as np

from crossbn.spec.dtypes import numpy_dtype


def _numeric(name: str, dtype: np.dtype) -> np.dtype:
    """The dtype, if it holds numbers: an object (or string, record) array is never rebuilt
    from bytes, whichever side of the channel names it."""
    if dtype.kind not in "biufc" and dtype.name != "bfloat16":
        raise TypeError(f"{name}: a {dtype.name} array cannot be sent (numbers only)")
    return dtype


def encode(arrays: dict) -> dict:
    if not isinstance(arrays, dict):
        raise TypeError(f"expected a dict of arrays, got {type(arrays).__name__}")
    out = {}
    for k, v in arrays.items():
        a = np.asarray(v)
        _numeric(k, a.dtype)
        out[k] = [a.dtype.name, list(a.shape), np.ascontiguousarray(a).tobytes()]
    return out


def decode(payload: dict) -> dict:
    return {
        k: np.frombuffer(raw, dtype=_numeric(k, numpy_dtype(dt))).reshape(shape).copy()
        for k, (dt, shape, raw) in payload.items()
    }
