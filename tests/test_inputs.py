"""Inputs: deterministic bytes, independent streams, the promised distributions."""

import hashlib
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from crossbn.oracle import batchnorm as ref
from crossbn.oracle.inputs import generate
from crossbn.spec.case import Case


def _digest(arrays):
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode() + arrays[k].tobytes())
    return h.hexdigest()


CASE = Case(shape=(4, 3, 5, 2), layout="channels_last", dtype="bfloat16", train_steps=2, seed=11)


def test_same_bytes_twice_and_in_another_process():
    code = (
        "from crossbn.spec.case import Case; from crossbn.oracle.inputs import generate; import hashlib;"
        "c=Case(shape=(4,3,5,2), layout='channels_last', dtype='bfloat16', train_steps=2, seed=11);"
        "a=generate(c); h=hashlib.sha256()\n"
        "for k in sorted(a): h.update(k.encode()+a[k].tobytes())\n"
        "print(h.hexdigest())"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert _digest(generate(CASE)) == _digest(generate(CASE)) == other


def test_arrays_do_not_depend_on_other_arrays():
    a = generate(Case(shape=(4, 3, 5), train_steps=1, eval_step=False, affine=False))
    b = generate(Case(shape=(4, 3, 5), train_steps=3, eval_step=True, affine=True))
    assert np.array_equal(a["x0"], b["x0"]) and np.array_equal(a["dy0"], b["dy0"])


def test_keys_dtype_and_layout():
    arrays = generate(CASE)
    assert set(arrays) == {"x0", "x1", "x2", "dy0", "dy1", "dy2", "gamma", "beta", "running_mean", "running_var"}
    assert arrays["x0"].dtype == np.dtype(ml_dtypes.bfloat16)
    assert arrays["x0"].shape == (4, 5, 2, 3) and arrays["gamma"].shape == (3,)
    assert (arrays["running_var"].astype(np.float64) > 0).all()


def test_no_parameters_when_not_affine_and_no_stats_when_untracked():
    arrays = generate(Case(shape=(4, 3), affine=False, track_running_stats=False))
    assert not {"gamma", "beta", "running_mean", "running_var"} & set(arrays)


def test_offset_ratio_sets_conditioning():
    x = generate(Case(shape=(4096, 2), dtype="float64", offset_ratio=1000.0, scale=0.5))["x0"]
    mean, std = ref.batch_mean(x), np.sqrt(ref.batch_var(x))
    np.testing.assert_allclose(mean / std, 1000.0, rtol=0.05)
    np.testing.assert_allclose(std, 0.5, rtol=0.05)


def test_constant_channel_has_zero_variance():
    x = generate(Case(shape=(16, 3, 4), distribution="constant_channel", offset_ratio=7.0))["x0"]
    var = ref.batch_var(x)
    assert var[0] == 0.0 and (var[1:] > 0.1).all()


def test_near_eps_variance_is_eps_sized():
    x = generate(Case(shape=(4096, 2), dtype="float64", distribution="near_eps", eps=1e-3))["x0"]
    np.testing.assert_allclose(ref.batch_var(x), 1e-3, rtol=0.1)


def test_fp16_stress_overflows_a_float16_sum_of_squares():
    x = generate(Case(shape=(64, 2), dtype="float16", distribution="fp16_stress"))["x0"]
    assert np.isfinite(x).all()
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.sum(x * x, axis=0, dtype=np.float16)).all()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_specials_planted_at_logical_index(value):
    c = Case(shape=(2, 3, 4), layout="channels_last", train_steps=2, specials=((value, 1, (1, 2, 3)),))
    arrays = generate(c)
    assert np.isfinite(arrays["x0"]).all()
    stored = arrays["x1"]  # channels_last: (N, L, C)
    got = stored[1, 3, 2]
    assert np.isnan(got) if value == "nan" else got == float(value)
    assert np.isfinite(stored).sum() == stored.size - 1
