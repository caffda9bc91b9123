"""An empty batch (N = 0) on real frameworks, in their worker processes.

What each result must be follows from the semantics in docs/cases.md ("An empty
batch") and each framework's source, not from a run:

- eval only: nothing is read from the batch, y and dx are empty, dgamma and
  dbeta are sums over nothing (0), the running statistics are finite and
  untouched: every backend matches.
- a training step, canonical meaning: the batch statistics of no values are
  NaN and the running statistics are updated with them (NaN).
  * onnxruntime (opset 15): the ONNX definition is that formula: a match.
  * tf-fused-op: FusedBatchNormV3 sets its running-statistics outputs to NaN
    for an empty input ("If input is empty, return NaN mean/variance") and
    never writes its reserve spaces: a match, and no batch statistics exposed.
  * torch: ATen's batch_norm returns before computing anything for an input
    with no elements, so the running statistics keep their values, as the
    backend declares (empty_batch="skip"): a `convention` result, exactly at
    the running statistics, which equal the initial ones.
  * keras-tensorflow (tf.nn.batch_normalization folds gamma into
    rsqrt(var + eps)) and flax-linen (multiplies scale into rsqrt(var + eps)):
    dgamma is the empty sum times the NaN inverse std, NaN where the oracle
    has 0 (in training and in the eval step after it, whose running
    statistics are NaN): a `nan-mismatch` at dgamma only; their running
    statistics are the canonical NaN.
"""

import numpy as np
import pytest

from crossbn.backends import discover, load
from crossbn.execution.runner import WorkerPool
from crossbn.oracle import inputs
from crossbn.spec.case import Case
from crossbn.verdict.judge import judge

BACKENDS = ("torch", "onnxruntime-opset15", "tf-fused-op", "keras-tensorflow", "flax-linen")
SHAPES = [(0, 3), (0, 3, 4, 4)]
NOT_RESULTS = {"crash", "error", "timeout"}


@pytest.fixture(scope="module")
def run():
    specs = discover()
    backends = {n: load(specs[n]) for n in BACKENDS}
    missing = {n: b.available() for n, b in backends.items() if b.available()}
    pool = WorkerPool(specs, backends)

    def run(name, case):
        if name in missing:
            pytest.skip(missing[name])
        rec = judge(case, name, backends[name], "cpu", pool)
        assert rec["verdict"] not in NOT_RESULTS, f"{name} {case.pytest_id}: {rec['verdict']}: {rec['reason']}"
        return rec

    yield run
    pool.close()


def _case(shape, train_steps):
    return Case(group="empty_batch", shape=shape, train_steps=train_steps)


def _off(rec) -> dict:
    return {k: o["verdict"] for k, o in rec["observables"].items() if o["verdict"] != "match"}


def _supported(rec):
    if rec["verdict"] == "unsupported":
        pytest.skip(rec["reason"])
    return rec


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES, ids=["rank2", "rank4"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_on_an_empty_batch_matches(run, backend, shape):
    rec = _supported(run(backend, _case(shape, 0)))
    assert rec["verdict"] == "match", (_off(rec), rec["reason"])
    assert "empty batch" in rec["reason"]


@pytest.mark.parametrize("shape", SHAPES, ids=["rank2", "rank4"])
@pytest.mark.parametrize("backend", ["onnxruntime-opset15", "tf-fused-op"])
def test_training_on_an_empty_batch_makes_running_statistics_nan(run, backend, shape):
    rec = _supported(run(backend, _case(shape, 1)))
    assert rec["verdict"] == "match", (_off(rec), rec["reason"])
    assert "train0.running_mean" in rec["observables"]  # NaN, and compared
    if backend == "tf-fused-op":  # the reserve spaces are not written for an empty input
        assert "train0.batch_mean" not in rec["observables"]


@pytest.mark.parametrize("shape", SHAPES, ids=["rank2", "rank4"])
def test_torch_keeps_its_running_statistics_as_it_declares(run, shape):
    case = _case(shape, 1)
    rec = run("torch", case)
    assert rec["verdict"] == "convention"
    assert _off(rec) == {"train0.running_mean": "convention", "train0.running_var": "convention"}
    assert "empty_batch=skip" in rec["reason"]
    assert rec["localization"]["stage"] == "running mean"
    assert rec["diagnosis"]["explains"] and rec["diagnosis"]["changes"] == {}
    # the convention is the initial statistics themselves, kept
    for stat in ("running_mean", "running_var"):
        o = rec["observables"][f"train0.{stat}"]
        assert np.isnan(float(o["expected_at"]))  # the canonical NaN (a record spells it "nan")
        assert o["actual_at"] == float(inputs.generate(case)[stat][tuple(o["where"])])


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES, ids=["rank2", "rank4"])
@pytest.mark.parametrize("backend", ["keras-tensorflow", "flax-linen"])
def test_gamma_folded_into_the_inverse_std_gives_nan_dgamma(run, backend, shape):
    rec = run(backend, _case(shape, 1))
    assert rec["verdict"] == "nan-mismatch"
    assert _off(rec) == {"train0.dgamma": "nan-mismatch", "eval.dgamma": "nan-mismatch"}
    assert rec["observables"]["train0.running_mean"]["verdict"] == "match"  # the canonical NaN
    assert rec["localization"]["stage"] == "dgamma"
