"""The error-bound model on known implementations, through real worker processes.

A float32 BatchNorm with a two-pass variance is correct: it must stay within
the bound on well- and ill-conditioned data. The one-pass E[x²]−E[x]²
variance is the textbook unstable formula: the model must flag it once the
mean offset is large, at the variance stage, and not before.
"""

from pathlib import Path

import pytest

from crossbn.backends import discover, load
from crossbn.execution.runner import WorkerPool
from crossbn.spec.case import Case
from crossbn.verdict.judge import judge

MODULE = str(Path(__file__).parent / "backends" / "numpy_variants.py")


@pytest.fixture(scope="module")
def run():
    specs = discover((MODULE,))
    names = ["numpy-twopass", "numpy-onepass"]
    backends = {n: load(specs[n]) for n in names}
    pool = WorkerPool(specs, backends)
    yield lambda case, name: judge(case, name, backends[name], "cpu", pool)
    pool.close()


CASES = [
    Case(shape=s, layout=l, gradients=False, offset_ratio=o, seed=i)
    for i, (s, l, o) in enumerate(
        [
            ((64, 4), "channels_first", 0.0),
            ((8, 4, 6, 6), "channels_last", 0.0),
            ((16, 3, 10), "channels_first", 1000.0),
            ((4, 5, 4, 4, 4), "channels_last", 1e4),
        ]
    )
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.pytest_id)
def test_two_pass_float32_is_within_bound(run, case):
    rec = run(case, "numpy-twopass")
    assert rec["verdict"] == "match", rec
    assert 0 < float(rec["worst"]["ratio"]) <= 1


def test_one_pass_variance_matches_on_centred_data(run):
    assert run(CASES[0], "numpy-onepass")["verdict"] == "match"


@pytest.mark.parametrize("offset", [1e3, 1e4])
def test_one_pass_variance_deviates_with_large_offset(run, offset):
    rec = run(Case(shape=(64, 4, 8), gradients=False, offset_ratio=offset), "numpy-onepass")
    # at 1e4 the variance even goes negative and y turns NaN
    assert rec["verdict"] in ("deviation", "nan-mismatch")
    assert rec["observables"]["train0.batch_mean"]["verdict"] == "match"
    assert rec["observables"]["train0.batch_var"]["verdict"] == "deviation"
    assert float(rec["observables"]["train0.batch_var"]["ratio"]) > 10
