"""Seeded weights and inputs of a model case, in canonical layout.

As in crossbn/oracle/inputs.py: every array has its own stream,
`numpy.random.default_rng([case.seed, stream])`, drawn in float64 and rounded once to the case
dtype, so its bytes depend only on the case; the oracle reads those rounded values back in float64.
Layout is canonical (NCHW images, OIHW conv kernels, (out, in) dense weights); each framework
adapter converts to its own.

Keys: "x<k>" (the input batch of step k), "<layer>.weight", "<layer>.bias",
"<bn>.gamma", "<bn>.beta", "<bn>.running_mean", "<bn>.running_var" (initial).
Values keep every hidden state near unit scale.

Design notes: docs/internals/oracle-and-verdict.md.
"""

from __future__ import annotations

import math

import numpy as np

from crossbn.spec.network_case import ModelCase

_X_STREAM = 100  # + step
_PARAM_STREAM = 1000  # + 16 * layer index + parameter number
_PARAMS = ("weight", "bias", "gamma", "beta", "running_mean", "running_var")


def _rng(case: ModelCase, stream: int) -> np.random.Generator:
    return np.random.default_rng([case.seed, stream])


def _draw(rng: np.random.Generator, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    if kind == "weight":
        fan_in = math.prod(shape[1:])
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)
    if kind == "bias":
        return rng.normal(0.0, 0.1, size=shape)
    if kind == "gamma":
        return rng.uniform(0.5, 1.5, size=shape)
    if kind == "beta":
        return rng.normal(0.0, 0.5, size=shape)
    if kind == "running_mean":
        return rng.normal(0.0, 0.2, size=shape)
    return rng.uniform(0.5, 2.0, size=shape)  # running_var


def generate(case: ModelCase) -> dict[str, np.ndarray]:
    """Every array of `case` in the case dtype and canonical layout."""
    net, dt = case.spec, np.dtype(case.dtype)
    out: dict[str, np.ndarray] = {}
    for k in range(len(case.steps)):
        out[f"x{k}"] = _rng(case, _X_STREAM + k).normal(0.0, 1.0, size=(case.batch, *net.input_shape)).astype(dt)
    index = {name: i for i, name in enumerate(net.names)}
    for key, shape in net.params().items():
        layer, kind = key.split(".")
        stream = _PARAM_STREAM + 16 * index[layer] + _PARAMS.index(kind)
        out[key] = _draw(_rng(case, stream), kind, shape).astype(dt)
    return out
