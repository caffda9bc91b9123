"""torch-compile: real Inductor compilation in a real worker process."""

from collections import Counter

import pytest

from crossbn.backends import discover, load
from crossbn.execution.runner import WorkerPool
from crossbn.spec.case import Case
from crossbn.verdict.judge import judge


@pytest.fixture(scope="module")
def run():
    specs = discover()
    backends = {n: load(specs[n]) for n in ("torch-compile", "torch")}
    if backends["torch-compile"].available():
        pytest.skip(backends["torch-compile"].available())
    pool = WorkerPool(specs, backends)
    yield lambda case, name="torch-compile": judge(case, name, backends[name], "cpu", pool, timeout=600)
    pool.close()


@pytest.mark.slow
def test_compiles_once_then_reuses_the_graph_and_records_compile_time(run):
    first = run(Case(suite="smoke", shape=(8, 3, 4), train_steps=1, seed=1))
    again = run(Case(suite="smoke", shape=(8, 3, 4), train_steps=1, seed=2))
    info = first["backend_info"]
    assert info["graphs_compiled"] >= 2 and info["compile_seconds"] > 0  # train and eval graphs
    assert again["backend_info"] == {"compile_seconds": 0.0, "graphs_compiled": 0}
    eager = run(Case(suite="smoke", shape=(8, 3, 4), train_steps=1, seed=2), "torch")
    assert again["verdict"] == eager["verdict"] == "convention"  # PyTorch's unbiased running variance
    assert again["observables"].keys() == eager["observables"].keys() - {"train0.batch_mean", "train0.invstd"}


def test_outside_the_stratified_subset_is_unsupported_with_the_reason(monkeypatch):
    from crossbn.spec.suites import load_suite

    backend = load(discover()["torch-compile"])
    default, smoke = load_suite("default"), load_suite("smoke")

    def inside(case):  # torch refuses some cases of its own (eps 0 in training): not the subset's doing
        return "stratified subset" not in (backend.supports(case) or "")

    backend.bind_suite(default)
    ran = [c for c in default if inside(c)]
    # every group and every dtype of the suite is represented, two cases of each
    assert {(c.group, c.dtype) for c in ran} == {(c.group, c.dtype) for c in default}
    assert len(ran) == sum(min(2, n) for n in Counter((c.group, c.dtype) for c in default).values()) < len(default)
    reason = next(backend.supports(c) for c in default if not inside(c))
    assert "2 case(s) per group and dtype" in reason and "CROSSBN_COMPILED_SUBSET=all runs every case" in reason
    backend.bind_suite(smoke)  # a suite as small as smoke runs whole
    assert all(inside(c) for c in smoke)
    monkeypatch.setenv("CROSSBN_COMPILED_SUBSET", "all")
    backend.bind_suite(default)
    assert all(inside(c) for c in default)
    monkeypatch.setenv("CROSSBN_COMPILED_SUBSET", "1")
    backend.bind_suite(default)
    assert len([c for c in default if inside(c)]) == len({(c.group, c.dtype) for c in default})
    monkeypatch.setenv("CROSSBN_COMPILED_SUBSET", "0")
    with pytest.raises(ValueError, match="CROSSBN_COMPILED_SUBSET='0': must be a whole number >= 1"):
        backend.bind_suite(default)
