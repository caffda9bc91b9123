"""The four dtypes crossbn speaks, in one table: names, NumPy dtypes
(bfloat16 through ml_dtypes), significand bits and their consequences.

ml_dtypes is imported only when bfloat16 is asked for: worker processes in
another interpreter may have NumPy and a framework but not ml_dtypes."""

from __future__ import annotations

from functools import cache

import numpy as np

NAMES = ("float64", "float32", "float16", "bfloat16")

# Significand bits including the implicit one: unit roundoff is 2**-bits.
MANTISSA_BITS = {"float64": 53, "float32": 24, "float16": 11, "bfloat16": 8}
UNIT_ROUNDOFF = {name: 2.0**-bits for name, bits in MANTISSA_BITS.items()}


def numpy_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def name_of(dtype) -> str:
    if isinstance(dtype, str) and dtype in NAMES:
        return dtype  # "bfloat16" is a NumPy dtype only once ml_dtypes is imported
    return np.dtype(dtype).name


@cache  # asked per array in the fingerprint search: finfo is slow
def finfo(name: str):
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.finfo(ml_dtypes.bfloat16)
    return np.finfo(name)


@cache
def smallest_subnormal(name: str) -> float:
    return float(finfo(name).smallest_subnormal)


@cache
def overflow_threshold(name: str) -> float:
    """Smallest magnitude that rounds to Inf: the largest finite value plus half an ulp."""
    top = float(finfo(name).max)
    return top + 2.0 ** (int(np.log2(top)) - MANTISSA_BITS[name])
