"""Validating the error-bound model on data, with the real frameworks.

1. float64, well-conditioned cases: the backends that compute in float64
   agree with the oracle to a few ulps of each observable's scale
   (error / ulp(max |expected|)), and the model's ratio stays below 1.
2. float32, well-conditioned cases: every backend stays below its bound.

Keras 3 on JAX and on PyTorch compute a float64 layer in float32 (their
`backend.result_type("float64", "float32")` is float32; see docs/findings.md):
those two are expected to fail part 1 and are marked xfail, so
the day Keras fixes it the suite reports XPASS.
"""

import pytest

from crossbn.backends import discover, load
from crossbn.execution.runner import WorkerPool
from crossbn.oracle import expected, inputs
from crossbn.oracle.tolerance import model_bounds
from crossbn.spec.case import Case
from crossbn.verdict.compare import compare

from few_ulps import assert_few_ulps  # tests/few_ulps.py

pytestmark = pytest.mark.slow  # the error model validated on four frameworks' outputs

FOUR = ("torch", "keras-tensorflow", "keras-jax", "keras-torch")
KERAS_F64_IN_F32 = (
    "Keras 3 on JAX/PyTorch computes float64 BatchNorm in float32 (result_type(float64, float32) == float32)"
)


@pytest.fixture(scope="module")
def pool():
    specs = discover()
    missing = [n for n in FOUR if load(specs[n]).available()]
    if missing:
        pytest.skip(f"backends not installed: {missing}")
    p = WorkerPool(specs, {n: load(specs[n]) for n in FOUR})
    yield p
    p.close()


def _well_conditioned(dtype):
    shapes = [
        ((32, 4), "channels_first"),
        ((8, 4, 12), "channels_last"),
        ((4, 4, 6, 6), "channels_first"),
        ((4, 4, 6, 6), "channels_last"),
        ((2, 4, 3, 4, 4), "channels_last"),
    ]
    return [
        Case(group="validation", shape=s, layout=l, dtype=dtype, train_steps=3, seed=i)
        for i, (s, l) in enumerate(shapes)
    ]


def _observe(pool, backend_name, case):
    backend = load(discover()[backend_name])
    ins = inputs.generate(case)
    outcome = pool.worker(backend_name).run(case, ins, "cpu")
    assert outcome.status == "ok", outcome.message
    running_var = backend.convention("running_var")
    exp, traces = expected.simulate(case, ins, running_var=running_var)
    return outcome.observables, exp, model_bounds(case, traces)


def _params(backends, xfail=()):
    return [
        pytest.param(b, marks=pytest.mark.xfail(reason=KERAS_F64_IN_F32, strict=False)) if b in xfail else b
        for b in backends
    ]


@pytest.mark.parametrize("backend", _params(FOUR, xfail=("keras-jax", "keras-torch")))
@pytest.mark.parametrize("case", _well_conditioned("float64"), ids=lambda c: c.pytest_id)
def test_float64_agrees_to_a_few_ulps(pool, backend, case):
    actual, exp, bounds = _observe(pool, backend, case)
    assert_few_ulps(backend, compare(actual, exp, bounds), exp)


@pytest.mark.parametrize("backend", FOUR)
@pytest.mark.parametrize("case", _well_conditioned("float32"), ids=lambda c: c.pytest_id)
def test_float32_stays_within_bound(pool, backend, case):
    # against the backend's own documented convention (PyTorch: unbiased running var)
    actual, exp, bounds = _observe(pool, backend, case)
    result = compare(actual, exp, bounds)
    worst = result.worst_observable
    assert result.verdict == "match", f"{backend}: {worst.name} error/bound {worst.ratio:.3g}"
