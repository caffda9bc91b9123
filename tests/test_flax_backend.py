"""The Flax backends (linen and nnx, eager and jit) in real worker processes.

1. float64, well-conditioned: Flax computes float64 in float64 (JAX_ENABLE_X64
   in the worker), so every observable agrees with the oracle to a few ulps of
   its scale and stays below its bound.
2. float32, well-conditioned: every backend stays below its bound, gradients
   and batch statistics included.
3. use_fast_variance: Flax's default variance E[x²] − E[x]² loses
   ~log2(1 + (mu/sigma)²) bits to cancellation. The error model's bound is the
   two-pass one, (rho + 3)·u·v, while the fast formula errs by about u·E[x²] =
   u·v·(1 + r²) for r = |mu|/sigma: at r = 1000 the batch variance must come
   out far beyond its bound (error/bound of order r²/(2(rho+3)) ~ 1e4), and
   with use_fast_variance=False the same case matches.
4. eval normalizes with the running statistics the training steps left.
5. what Flax cannot express is `unsupported`, with the reason.
6. half precision (findings, marked xfail so that a fixed Flax reports XPASS):
   - training dx exceeds its bound on every Flax backend: the half input is
     upcast to float32 at two sites (`_compute_stats`' astype and the implicit
     promotion in `x - mean`), so autodiff rounds the two float32 cotangents to
     half separately and adds them in half (~10-30 ulps where they cancel);
     with x upcast once before the layer the same dx is within its bound;
   - nnx eval normalizes in the half dtype: `promote_dtype(..., dtype=self.dtype)`
     casts the float32 running statistics, scale and bias to float16/bfloat16
     and eval's y, dgamma, dbeta are computed and reduced in half (linen keeps
     the float32 statistics and stays within its bound).
   Everything else in half precision is within its bound.

All cases share two shapes, so each worker compiles few XLA programs; the
four workers run their cases concurrently (one thread per worker process).
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from crossbn.backends import discover, load
from crossbn.backends.base import CONVENTION_KEYS
from crossbn.execution.runner import WorkerPool
from crossbn.oracle import expected, inputs
from crossbn.oracle.tolerance import model_bounds
from crossbn.spec.case import Case
from crossbn.verdict.compare import compare

from few_ulps import assert_few_ulps  # tests/few_ulps.py

pytestmark = pytest.mark.slow  # Flax workers over the float64, float32 and half-precision cases

FLAX = ("flax-linen", "flax-linen-jit", "flax-nnx", "flax-nnx-jit")

SHAPES = (((8, 4, 6), "channels_first"), ((4, 3, 4, 4), "channels_last"))
WELL_64 = [
    Case(group="flax", shape=s, layout=l, dtype="float64", train_steps=2, seed=i) for i, (s, l) in enumerate(SHAPES)
]
WELL_32 = [
    Case(group="flax", shape=s, layout=l, dtype="float32", train_steps=2, seed=i) for i, (s, l) in enumerate(SHAPES)
]
OFFSET = 1000.0
FAST = Case(group="flax_fastvar", shape=(8, 4, 6), dtype="float32", train_steps=2, offset_ratio=OFFSET)
TWO_PASS = Case(
    group="flax_fastvar",
    shape=(8, 4, 6),
    dtype="float32",
    train_steps=2,
    offset_ratio=OFFSET,
    options={"flax.use_fast_variance": False},
)
NO_F32_REDUCTIONS = Case(
    group="flax", shape=(8, 4, 6), dtype="float16", train_steps=1, options={"flax.force_float32_reductions": False}
)
HALF = [Case(group="flax_half", shape=(16, 4), dtype=d, train_steps=2) for d in ("float16", "bfloat16")]
CASES = (*WELL_64, *WELL_32, FAST, TWO_PASS, NO_F32_REDUCTIONS, *HALF)
HALF_DX = (
    "Flax upcasts a half input at two sites; autodiff rounds the two float32 cotangents to half "
    "separately and adds them in half: train dx ~10-30 ulps off where they cancel"
)
NNX_EVAL_HALF = (
    "nnx.BatchNorm casts its float32 running statistics, scale and bias to the layer dtype "
    "(promote_dtype): eval normalizes and reduces in float16/bfloat16"
)


@pytest.fixture(scope="module")
def specs():
    specs = discover()
    missing = [n for n in FLAX if n not in specs or load(specs[n]).available()]
    if missing:
        pytest.skip(f"flax backends not installed: {missing}")
    return specs


@pytest.fixture(scope="module")
def outcomes(specs):
    """{(backend, case id): Outcome} for every case on every Flax backend."""
    pool = WorkerPool(specs, {n: load(specs[n]) for n in FLAX})

    def run_all(name):
        worker = pool.worker(name)
        return {(name, c.id): worker.run(c, inputs.generate(c), "cpu") for c in CASES}

    try:
        with ThreadPoolExecutor(len(FLAX)) as ex:
            out = {}
            for part in ex.map(run_all, FLAX):
                out.update(part)
        yield out
    finally:
        pool.close()


def _observe(outcomes, backend, case):
    outcome = outcomes[(backend, case.id)]
    assert outcome.status == "ok", outcome.message
    ins = inputs.generate(case)
    exp, traces = expected.simulate(case, ins, running_var="biased")
    return outcome.observables, exp, model_bounds(case, traces), ins


@pytest.mark.parametrize("backend", FLAX)
@pytest.mark.parametrize("case", WELL_64, ids=lambda c: c.pytest_id)
def test_float64_agrees_to_a_few_ulps(outcomes, backend, case):
    actual, exp, bounds, _ = _observe(outcomes, backend, case)
    assert actual["train0.y"].dtype == np.float64
    result = compare(actual, exp, bounds)
    assert {n.split(".")[1] for n in result.not_exposed} <= {"invstd"}, result.not_exposed
    assert_few_ulps(backend, result, exp)


@pytest.mark.parametrize("backend", FLAX)
@pytest.mark.parametrize("case", WELL_32, ids=lambda c: c.pytest_id)
def test_float32_stays_within_bound(outcomes, backend, case):
    actual, exp, bounds, _ = _observe(outcomes, backend, case)
    result = compare(actual, exp, bounds)
    worst = result.worst_observable
    assert result.verdict == "match", f"{backend}: {worst.name} error/bound {worst.ratio:.3g}"


@pytest.mark.parametrize("backend", FLAX)
def test_every_observable_is_returned_in_the_stored_layout_and_dtype(outcomes, backend):
    case = WELL_32[1]  # channels_last, rank 4
    actual, exp, _, _ = _observe(outcomes, backend, case)
    for step in ("train0", "train1"):
        for obs in ("y", "batch_mean", "batch_var", "running_mean", "running_var", "dx", "dgamma", "dbeta"):
            assert f"{step}.{obs}" in actual, f"{backend}: no {step}.{obs}"
    assert {"eval.y", "eval.dx", "eval.dgamma", "eval.dbeta"} <= set(actual)
    assert not {"eval.running_mean", "eval.batch_mean"} & set(actual)
    for name, arr in actual.items():
        assert arr.shape == np.shape(exp[name]), name
    assert actual["train0.dx"].shape == case.array_shape == (4, 4, 4, 3)
    assert all(actual[f"{s}.{o}"].dtype == np.float32 for s in ("train0", "eval") for o in ("y", "dx", "dgamma"))


@pytest.mark.parametrize("backend", FLAX)
def test_fast_variance_deviates_at_large_offset_and_two_pass_matches(outcomes, backend):
    actual, exp, bounds, _ = _observe(outcomes, backend, FAST)
    fast = compare(actual, exp, bounds)
    assert fast.verdict == "deviation"
    worst = fast.worst_observable
    assert worst.name.endswith(".batch_var"), f"{backend}: worst is {worst.name} ({worst.ratio:.3g})"
    # the cancellation error ~ u*v*r² against a bound ~ (rho+3)*u*v: ratio of
    # order r²/100 (measured ~1e4 at r = 1000); r²/1e4 leaves room for luck
    assert fast.observables["train0.batch_var"].ratio > OFFSET**2 / 1e4
    # the variance error reaches what the layer produces and what it keeps
    assert fast.observables["train0.y"].ratio > 1 and fast.observables["train0.running_var"].ratio > 1

    actual, exp, bounds, _ = _observe(outcomes, backend, TWO_PASS)
    two_pass = compare(actual, exp, bounds)
    worst = two_pass.worst_observable
    assert two_pass.verdict == "match", f"{backend}: {worst.name} error/bound {worst.ratio:.3g}"


@pytest.mark.parametrize("backend", FLAX)
def test_eval_normalizes_with_the_running_statistics(outcomes, backend):
    case = WELL_64[0]
    actual, _, _, ins = _observe(outcomes, backend, case)
    mean, var = actual["train1.running_mean"], actual["train1.running_var"]
    x, g, b = ins["x2"], ins["gamma"], ins["beta"]
    with_running = (x - mean[:, None]) / np.sqrt(var[:, None] + case.eps) * g[:, None] + b[:, None]
    np.testing.assert_allclose(actual["eval.y"], with_running, rtol=1e-12, atol=1e-12)
    batch = (x - x.mean((0, 2))[:, None]) / np.sqrt(x.var((0, 2))[:, None] + case.eps) * g[:, None] + b[:, None]
    assert np.max(np.abs(actual["eval.y"] - batch)) > 1e-3  # not the batch statistics
    # and the running statistics moved by the canonical momentum (0.9 on the old value)
    m0 = 0.9 * ins["running_mean"] + 0.1 * ins["x0"].mean((0, 2))
    np.testing.assert_allclose(actual["train0.running_mean"], m0, rtol=1e-12)


def _is_finding(backend, name):
    step, obs = name.split(".")
    return (step.startswith("train") and obs == "dx") or (backend.startswith("flax-nnx") and step == "eval")


@pytest.mark.parametrize("backend", FLAX)
@pytest.mark.parametrize("case", HALF, ids=lambda c: c.pytest_id)
def test_half_precision_is_within_bound_outside_the_known_findings(outcomes, backend, case):
    actual, exp, bounds, _ = _observe(outcomes, backend, case)
    result = compare(actual, exp, bounds)
    for name, obs in result.observables.items():
        if not _is_finding(backend, name):
            assert obs.verdict == "match", f"{backend} {name}: error/bound {obs.ratio:.3g}"


@pytest.mark.xfail(reason=HALF_DX, strict=False)
@pytest.mark.parametrize("backend", FLAX)
@pytest.mark.parametrize("case", HALF, ids=lambda c: c.pytest_id)
def test_half_precision_training_dx_within_bound(outcomes, backend, case):
    actual, exp, bounds, _ = _observe(outcomes, backend, case)
    result = compare(actual, exp, bounds)
    worst = max(o.ratio for n, o in result.observables.items() if n.endswith(".dx") and n.startswith("train"))
    assert worst <= 1.0, f"{backend}: train dx error/bound {worst:.3g}"


@pytest.mark.parametrize(
    "backend",
    [
        b
        if b.startswith("flax-linen")
        else pytest.param(b, marks=pytest.mark.xfail(reason=NNX_EVAL_HALF, strict=False))
        for b in FLAX
    ],
)
@pytest.mark.parametrize("case", HALF, ids=lambda c: c.pytest_id)
def test_half_precision_eval_within_bound(outcomes, backend, case):
    actual, exp, bounds, _ = _observe(outcomes, backend, case)
    result = compare(actual, exp, bounds)
    bad = {n: f"{o.ratio:.3g}" for n, o in result.observables.items() if n.startswith("eval") and o.ratio > 1}
    assert not bad, f"{backend}: eval error/bound {bad}"


def test_force_float32_reductions(outcomes):
    case = NO_F32_REDUCTIONS
    for backend in ("flax-nnx", "flax-nnx-jit"):  # nnx.BatchNorm has no such argument (flax 0.12)
        outcome = outcomes[(backend, case.id)]
        assert outcome.status == "unsupported" and "force_float32_reductions" in outcome.message
    for backend in ("flax-linen", "flax-linen-jit"):
        actual, *_ = _observe(outcomes, backend, case)
        # statistics held in float16 as asked, not float32
        assert actual["train0.batch_var"].dtype == np.float16


def test_cases_flax_cannot_express_are_unsupported_and_conventions_complete(specs):
    for name in FLAX:
        b = load(specs[name])
        assert set(CONVENTION_KEYS) <= set(b.conventions)
        assert b.option_family == "flax" and b.convention("running_var") == "biased"
        assert "cumulative" in b.supports(Case(cumulative=True))
        assert "track_running_stats" in b.supports(Case(track_running_stats=False))
        assert b.supports(Case(dtype="bfloat16")) is None
        assert b.applies(FAST) and not load(specs["torch"]).applies(TWO_PASS)
