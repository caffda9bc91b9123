"""Arrays across process boundaries without pickle.

execnet channels carry only plain values (str, bytes, numbers, lists, dicts),
so an array travels as `[dtype name, shape, raw bytes]`. The dtype is named,
not pickled; bfloat16 comes back through ml_dtypes. This module must stay
importable with nothing but NumPy (and ml_dtypes when bfloat16 is used),
because worker processes in other interpreters import it too.
"""

from __future__ import annotations

import numpy as np

from .dtypes import numpy_dtype


def encode(arrays: dict) -> dict:
    return {
        k: [a.dtype.name, list(a.shape), np.ascontiguousarray(a).tobytes()]
        for k, a in ((k, np.asarray(v)) for k, v in arrays.items())
    }


def decode(payload: dict) -> dict:
    return {
        k: np.frombuffer(raw, dtype=numpy_dtype(dt)).reshape(shape).copy()
        for k, (dt, shape, raw) in payload.items()
    }
