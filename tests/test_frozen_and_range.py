"""Two case axes: a frozen layer in a training step, and magnitudes up to
where the batch variance overflows.

1. The oracle's two readings of a frozen step: "batch" (canonical: a
   training step without parameter gradients) and "inference" (the running
   statistics normalize and are kept), each against crossbn/oracle/ directly.
2. Real frameworks, in worker processes: PyTorch's requires_grad_(False)
   is the batch reading, Keras' and tf.keras' trainable = False the
   inference one, each as declared; neither returns parameter gradients.
3. running_stats = "data": the running statistics are the data's own, so
   eval normalizes its own batch as training would.
4. The error model's range: past the float32 range of the sums it forms,
   an element is counted as not judged (never passed), NaN where the exact
   value is finite stays a finding, and below the range everything is judged.
"""

import dataclasses

import numpy as np
import pytest
from test_compiled_backends import _judging

from crossbn.oracle import batchnorm as ref, expected, inputs as inputs_mod
from crossbn.spec.case import Case, CaseError
from crossbn.spec.suites import load_suite
from crossbn.verdict.compare import compare
from crossbn.verdict.judge import expectation

# ---- 1. the oracle ------------------------------------------------------------------------------


def test_a_frozen_step_read_as_batch_is_training_without_parameter_gradients():
    case = Case(shape=(8, 3, 4), frozen=True, train_steps=2, dtype="float64")
    ins = inputs_mod.generate(case)
    frozen, _ = expected.simulate(case, ins)
    trainable, _ = expected.simulate(dataclasses.replace(case, frozen=False), ins)
    assert set(trainable) - set(frozen) == {f"{s}.{g}" for s in case.steps for g in ("dgamma", "dbeta")}
    assert set(frozen) <= set(trainable)
    for name, value in frozen.items():
        np.testing.assert_array_equal(value, trainable[name], err_msg=name)


def test_a_frozen_step_read_as_inference_normalizes_with_the_running_statistics_and_keeps_them():
    case = Case(shape=(8, 3, 4), frozen=True, train_steps=2, offset_ratio=2.0, dtype="float64")
    ins = inputs_mod.generate(case)
    exp, traces = expected.simulate(case, ins, frozen="inference")
    rm, rv = ins["running_mean"], ins["running_var"]
    for k, step in enumerate(case.steps):
        fwd = ref.eval_forward(ins[f"x{k}"], rm, rv, ins["gamma"], ins["beta"], case.eps)
        np.testing.assert_array_equal(exp[f"{step}.y"], fwd["y"])
        grads = ref.eval_backward(ins[f"dy{k}"], fwd["x_hat"], fwd["invstd"], ins["gamma"])
        np.testing.assert_array_equal(exp[f"{step}.dx"], grads["dx"])
        assert not {f"{step}.batch_mean", f"{step}.dgamma", f"{step}.dbeta"} & set(exp)
        if step != "eval":
            np.testing.assert_array_equal(exp[f"{step}.running_mean"], rm)
            np.testing.assert_array_equal(exp[f"{step}.running_var"], rv)
    # and the two readings differ where it shows: the batch is 2 sigma away from the running mean
    batch, _ = expected.simulate(case, ins, frozen="batch")
    assert np.abs(batch["train0.y"] - exp["train0.y"]).max() > 0.5


def test_a_frozen_case_is_validated_and_keeps_old_ids():
    with pytest.raises(CaseError, match="frozen"):
        Case(frozen=True, track_running_stats=False)
    with pytest.raises(CaseError, match="running_stats"):
        Case(running_stats="trained")
    assert Case(frozen=True).id != Case().id != Case(running_stats="data").id
    assert Case.from_dict(Case(frozen=True, running_stats="data").to_dict()) == Case(frozen=True, running_stats="data")
    # fields at their defaults are left out of the content hash: a case recorded before they
    # existed keeps its id. This record is docs/examples/torch-cpu-bfloat16-normalization's
    # finding.json as first committed (the regenerated one records both fields).
    recorded = {
        "case_id": "ddd34fab59cb",
        "case": {
            "suite": "default",
            "group": "magnitude_min",
            "shape": [7, 2, 3, 5],
            "layout": "channels_first",
            "dtype": "bfloat16",
            "eps": 1e-05,
            "momentum": 0.9,
            "cumulative": False,
            "affine": True,
            "track_running_stats": True,
            "train_steps": 1,
            "eval_step": False,
            "gradients": False,
            "distribution": "normal",
            "scale": 1.0,
            "offset_ratio": 0.0,
            "specials": [],
            "seed": 0,
            "options": {},
        },
    }
    assert "frozen" not in recorded["case"] and "running_stats" not in recorded["case"]
    assert (
        Case.from_dict({k: v for k, v in recorded["case"].items() if k not in ("suite", "group")}).id
        == recorded["case_id"]
    )


# ---- 2. real frameworks -------------------------------------------------------------------------

FROZEN_RUNS = {"torch": "batch", "keras-tensorflow": "inference", "keras-jax": "inference", "tf-keras": "inference"}


@pytest.fixture(scope="module")
def run():
    yield from _judging(list(FROZEN_RUNS))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FROZEN_RUNS))
def test_each_framework_freezes_as_it_declares(run, name):
    case = Case(shape=(8, 3, 4), frozen=True, train_steps=2, offset_ratio=2.0, seed=3)
    record = run(case, name)
    assert record["verdict"] in ("match", "convention"), record["reason"]
    compared = set(record["observables"])
    assert not any(k.endswith((".dgamma", ".dbeta")) for k in record["digests"]), "a frozen parameter got a gradient"
    assert {"train0.y", "train1.running_var", "eval.y", "eval.dx"} <= compared
    ins = inputs_mod.generate(case)
    other = {"batch": "inference", "inference": "batch"}[FROZEN_RUNS[name]]
    # held to the other reading, the same outputs would be far out of bound
    exp_other, bounds_other, _ = expectation(case, ins, frozen=other)
    exp_declared, _, _ = expectation(case, ins, frozen=FROZEN_RUNS[name])
    assert np.abs(exp_other["train0.y"] - exp_declared["train0.y"]).max() > 100 * bounds_other["train0.y"].max()


# ---- 3. the data's own running statistics ---------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_trained_running_statistics_are_the_data_s_own(dtype):
    case = Case(shape=(16, 3, 4), train_steps=0, running_stats="data", offset_ratio=100.0, dtype=dtype)
    ins = inputs_mod.generate(case)
    x = ins["x0"].astype(np.float64)
    np.testing.assert_array_equal(ins["running_mean"], ref.batch_mean(x).astype(ins["x0"].dtype))
    np.testing.assert_array_equal(ins["running_var"], ref.batch_var(x).astype(ins["x0"].dtype))
    exp, _ = expected.simulate(case, ins)
    as_training = ref.train_forward(x, ins["gamma"], ins["beta"], case.eps)["y"]
    # eval with the stored statistics is training's output up to their rounding to the dtype
    u = float(np.finfo(ins["x0"].dtype).eps)
    assert np.abs(exp["eval.y"] - as_training).max() <= 200 * u * np.abs(as_training).max()


def test_default_covers_the_new_axes():
    cases = load_suite("default")
    groups = {c.group for c in cases}
    assert {"frozen", "trained_eval", "trained_range", "trained_range16", "range32", "range16"} <= groups
    assert any(c.frozen for c in cases) and any(c.running_stats == "data" for c in cases)
    # the spreads reach past float32's variance overflow (sigma 1.8e19) and float16's (sigma 256)
    assert max(c.scale for c in cases if c.dtype == "float32") > 2e19
    assert max(c.scale for c in cases if c.dtype == "float16") > 256
    constant = [c for c in cases if c.running_stats == "data" and c.distribution == "constant_channel"]
    assert {c.offset_ratio for c in constant} >= {0.0, 100.0, 10000.0}


# ---- 4. the error model's range --------------------------------------------------------------------


def _judged(case, actual_from_exact):
    ins = inputs_mod.generate(case)
    exp, bounds, _ = expectation(case, ins)
    dt = ins["x0"].dtype
    with np.errstate(over="ignore"):
        actual = {k: actual_from_exact(k, np.asarray(v)).astype(dt) for k, v in exp.items()}
    return compare(actual, exp, bounds, channel_axis=case.channel_axis), exp, bounds


def test_past_the_float32_range_elements_are_counted_not_judged():
    case = Case(shape=(8, 4, 5, 5), scale=1e20, train_steps=1, dtype="float32")
    result, exp, bounds = _judged(case, lambda k, v: v)
    y = result.observables["train0.y"]
    assert y.verdict == "match" and y.n_unjudged == y.size and "not judged" in y.note
    assert not np.isfinite(bounds["train0.batch_var"]).any()
    assert np.isfinite(exp["train0.y"]).all()  # the exact output is representable
    # the batch variance (1e40) overflows float32: its correctly rounded value is Inf, judged by position
    assert result.observables["train0.batch_var"].verdict == "match"
    assert result.observables["train0.batch_mean"].n_unjudged == 0  # the mean's sum fits: judged
    # past the range a statistic may overflow: Inf where its exact value is finite is counted, not judged
    near = dataclasses.replace(case, scale=1e19)
    inf, exp19, _ = _judged(near, lambda k, v: np.full_like(v, np.inf) if k == "train0.running_var" else v)
    assert np.isfinite(exp19["train0.running_var"]).all()
    assert inf.observables["train0.running_var"].verdict == "match"
    assert inf.observables["train0.running_var"].n_unjudged == near.channels
    # NaN where BatchNorm has a finite value is a finding, bound or no bound
    nan, _, _ = _judged(case, lambda k, v: np.full_like(v, np.nan) if k == "train0.y" else v)
    assert nan.observables["train0.y"].verdict == "nan-mismatch"


def test_below_the_range_every_element_is_judged():
    case = Case(shape=(8, 4, 5, 5), scale=1e17, offset_ratio=10.0, train_steps=1, dtype="float32")
    result, _, _ = _judged(case, lambda k, v: v)
    assert result.verdict == "match"
    assert all(o.n_unjudged == 0 for o in result.observables.values())
    # and a wrong answer there is a deviation: y = beta (what an overflowed variance gives)
    ins = inputs_mod.generate(case)
    beta = ref.to_channel_shape(ins["beta"], case.rank, 1)
    wrong, _, _ = _judged(case, lambda k, v: np.broadcast_to(beta, v.shape) if k == "train0.y" else v)
    assert wrong.observables["train0.y"].verdict == "deviation"


def test_float16_past_its_own_range_is_judged_in_float32():
    """float16 data is reduced in float32 (tolerance.compute_roundoff), so a
    variance past 65504 is still a judged computation; only the returned
    batch variance overflows to Inf. The running variance stored in float16
    is Inf too, and eval with an Inf variance is beyond the model: counted."""
    case = Case(shape=(8, 4, 5, 5), scale=3000.0, train_steps=1, dtype="float16")
    result, exp, _ = _judged(case, lambda k, v: v)
    assert exp["train0.batch_var"].min() > 65504 and np.isinf(exp["train0.running_var"]).all()
    assert result.verdict == "match"
    assert all(o.n_unjudged == 0 for name, o in result.observables.items() if name.startswith("train0."))
    assert result.observables["eval.y"].n_unjudged == result.observables["eval.y"].size
