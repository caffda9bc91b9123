"""compare.py: metrics, NaN/Inf handling and verdicts on arrays with known errors."""

import ml_dtypes
import numpy as np
import pytest

from crossbn.oracle.tolerance import SAFETY
from crossbn.spec.verdicts import worst
from crossbn.verdict.compare import compare, compare_observable, ulp


def test_exact_result_matches_with_zero_ratio():
    e = np.linspace(-3, 3, 12).reshape(3, 4)
    r = compare_observable("train0.y", e.astype(np.float32), e.astype(np.float32).astype(np.float64), np.zeros_like(e))
    assert r.verdict == "match" and r.ratio == 0 and r.max_abs == 0 and r.n_over == 0


def test_ratio_is_error_over_bound_and_locates_the_worst_element():
    e = np.ones((2, 3))
    a = e.copy()
    a[1, 2] += 1e-3
    model = np.full_like(e, 1e-4)
    r = compare_observable("train0.y", a, e, model)
    bound = SAFETY * (1e-4 + 2.0**-53 * 1.0 + 5e-324)
    assert r.verdict == "deviation"
    assert r.where == [1, 2] and r.n_over == 1 and r.size == 6
    assert r.ratio == pytest.approx(1e-3 / bound, rel=1e-6)
    assert r.max_abs == pytest.approx(1e-3) and r.expected_at == 1.0 and r.actual_at == pytest.approx(1.001)


def test_output_rounding_alone_is_within_bound():
    """A correctly rounded float16 result of the exact value must match even with a zero model bound."""
    e = np.random.default_rng(0).normal(size=1000)
    r = compare_observable("eval.y", e.astype(np.float16), e, np.zeros_like(e))
    assert r.verdict == "match" and r.max_ulp <= 0.5


def test_ulp_matches_numpy_spacing():
    v = np.array([1.0, 3.5, 1e-3, 6e4, 1e-7])
    np.testing.assert_array_equal(ulp(v, "float32"), np.spacing(v.astype(np.float32)).astype(np.float64))
    np.testing.assert_array_equal(ulp(v[:4], "float16"), np.spacing(v[:4].astype(np.float16)).astype(np.float64))
    assert ulp(np.array([1.0]), "bfloat16")[0] == 2.0**-7
    assert ulp(np.array([0.0]), "float32")[0] == np.finfo(np.float32).smallest_subnormal


@pytest.mark.parametrize(
    "actual_value, expected_value",
    [
        (np.nan, 1.0),
        (1.0, np.nan),
        (np.inf, -np.inf),
        (np.inf, 1.0),
    ],
)
def test_nonfinite_compared_by_position_and_sign(actual_value, expected_value):
    e = np.array([0.5, expected_value, 2.0])
    a = np.array([0.5, actual_value, 2.0])
    r = compare_observable("train0.y", a, e, np.zeros(3))
    assert r.verdict == "nan-mismatch" and "[1]" in r.note


def test_matching_nan_positions_compare_the_rest():
    e = np.array([np.nan, np.inf, 2.0])
    r = compare_observable("train0.y", e.copy(), e, np.zeros(3))
    assert r.verdict == "match"
    a = np.array([np.nan, np.inf, 2.5])
    assert compare_observable("train0.y", a, e, np.zeros(3)).verdict == "deviation"


def test_shape_mismatch_is_a_deviation():
    r = compare_observable("train0.y", np.zeros((2, 3)), np.zeros((3, 2)), np.zeros((3, 2)))
    assert r.verdict == "deviation" and "shape" in r.note


def test_convention_when_only_the_declared_semantics_match():
    canonical, declared = np.array([1.0, 2.0]), np.array([1.5, 2.5])
    r = compare_observable(
        "train0.running_var", declared.copy(), canonical, np.zeros(2), convention=(declared, np.zeros(2))
    )
    assert r.verdict == "convention" and r.convention_ratio == 0
    r = compare_observable(
        "train0.running_var", declared + 0.1, canonical, np.zeros(2), convention=(declared, np.zeros(2))
    )
    assert r.verdict == "deviation"


def test_bfloat16_actual_is_accepted():
    e = np.array([1.0, 2.0, 3.0])
    r = compare_observable("train0.y", e.astype(ml_dtypes.bfloat16), e, np.zeros(3))
    assert r.verdict == "match" and r.dtype == "bfloat16"


def test_compare_orders_verdicts_and_lists_unexposed():
    exp = {"train0.batch_mean": np.zeros(2), "train0.y": np.ones(2), "train0.dx": np.ones(2)}
    bounds = {k: np.zeros(2) for k in exp}
    act = {"train0.y": np.array([1.0, np.nan]), "train0.dx": np.array([1.0, 1.5])}
    c = compare(act, exp, bounds)
    assert c.not_exposed == ["train0.batch_mean"]
    assert c.observables["train0.y"].verdict == "nan-mismatch"
    assert c.verdict == "nan-mismatch" and c.worst_observable.name == "train0.y"
    assert worst(["match", "convention"]) == "convention" and worst([]) == "match"


def test_a_backend_that_returns_nothing_does_not_pass():
    exp = {"train0.y": np.ones(2), "eval.y": np.ones(2)}
    c = compare({}, exp, {k: np.zeros(2) for k in exp})
    assert c.verdict == "deviation" and "train0.y" in c.note
    c = compare(
        {"train0.dX": np.ones(2), "train0.y": np.ones(2), "eval.y": np.ones(2)}, exp, {k: np.zeros(2) for k in exp}
    )
    assert c.verdict == "match" and c.unexpected == ["train0.dX"]


def test_breaking_the_documented_convention_is_a_deviation():
    canonical, declared = np.array([1.0, 2.0]), np.array([1.5, 2.5])
    r = compare_observable(
        "train0.running_var", canonical.copy(), canonical, np.zeros(2), convention=(declared, np.zeros(2))
    )
    assert r.verdict == "deviation" and "documented convention" in r.note


def test_unbounded_elements_are_counted_not_judged():
    e = np.array([1.0, 2.0])
    r = compare_observable("train0.y", np.array([1.0, 7.0]), e, np.array([0.0, np.nan]))
    assert r.verdict == "match" and r.n_unjudged == 1 and "not judged" in r.note


def test_worst_elements_are_the_largest_ratios_worst_first():
    e = np.zeros((2, 3, 4))
    a = np.zeros((2, 3, 4), dtype=np.float32)
    errors = {(0, 1, 2): 5e-3, (1, 2, 3): 9e-3, (1, 0, 0): 1e-3, (0, 0, 1): 7e-3, (1, 1, 1): 2e-3, (0, 2, 0): 4e-4}
    for at, err in errors.items():
        a[at] = err
    r = compare_observable("train0.y", a, e, np.full(e.shape, 1e-4), channel_axis=1)
    top = sorted(errors, key=lambda at: -float(np.float32(errors[at])))[:5]
    assert [w["where"] for w in r.worst_elements] == [list(at) for at in top]
    assert r.worst_elements[0]["where"] == r.where and r.worst_elements[0]["ratio"] == r.ratio
    w = r.worst_elements[1]
    assert w["actual"] == float(np.float32(7e-3)) and w["expected"] == 0.0
    assert w["ratio"] == pytest.approx(abs(w["actual"] - w["expected"]) / w["bound"])


def test_per_channel_ratio_is_the_max_over_the_other_axes():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(4, 3, 5))
    a = e.copy()
    a[2, 1, 4] += 1e-3  # channel 1
    a[0, 2, 0] += 3e-3  # channel 2
    bound = np.full(e.shape, 1e-4)
    r = compare_observable("train0.y", a, e, bound, channel_axis=1)
    per = np.asarray(r.per_channel)
    assert per.shape == (3,) and per[0] == 0.0
    assert per[1] == pytest.approx(1e-3 / (SAFETY * (1e-4 + 2.0**-53 * abs(e[2, 1, 4]) + 5e-324)), rel=1e-6)
    assert per[2] > per[1] and max(per) == r.ratio
    # channels last: the same errors, moved
    r_last = compare_observable(
        "train0.y", np.moveaxis(a, 1, -1), np.moveaxis(e, 1, -1), np.moveaxis(bound, 1, -1), channel_axis=2
    )
    assert r_last.per_channel == r.per_channel
    # a per-channel statistic is its own per-channel ratio
    stat = compare_observable("train0.batch_mean", a[0, :, 0], e[0, :, 0], bound[0, :, 0], channel_axis=1)
    assert len(stat.per_channel) == 3 and stat.per_channel[2] == stat.ratio


def test_a_match_keeps_no_worst_elements_or_channels():
    e = np.linspace(-1, 1, 12).reshape(4, 3)
    r = compare_observable("train0.y", e.astype(np.float32), e, np.full(e.shape, 1e-6), channel_axis=1)
    assert r.verdict == "match" and r.worst_elements == [] and r.per_channel is None
