"""torch-compile: real Inductor compilation in a real worker process."""

import pytest

from crossbn.backends import discover, load
from crossbn.case import Case
from crossbn.judge import judge
from crossbn.runner import WorkerPool


@pytest.fixture(scope="module")
def run():
    specs = discover()
    backends = {n: load(specs[n]) for n in ("torch-compile", "torch")}
    if backends["torch-compile"].available():
        pytest.skip(backends["torch-compile"].available())
    pool = WorkerPool(specs, backends)
    yield lambda case, name="torch-compile": judge(case, name, backends[name], "cpu", pool, timeout=600)
    pool.close()


def test_compiles_once_then_reuses_the_graph_and_records_compile_time(run):
    first = run(Case(suite="smoke", shape=(8, 3, 4), train_steps=1, seed=1))
    again = run(Case(suite="smoke", shape=(8, 3, 4), train_steps=1, seed=2))
    info = first["backend_info"]
    assert info["graphs_compiled"] >= 2 and info["compile_seconds"] > 0  # train and eval graphs
    assert again["backend_info"] == {"compile_seconds": 0.0, "graphs_compiled": 0}
    eager = run(Case(suite="smoke", shape=(8, 3, 4), train_steps=1, seed=2), "torch")
    assert again["verdict"] == eager["verdict"] == "convention"  # PyTorch's unbiased running variance
    assert again["observables"].keys() == eager["observables"].keys() - {"train0.batch_mean", "train0.invstd"}


def test_outside_the_bounded_subset_is_unsupported_with_the_reason(monkeypatch):
    backend = load(discover()["torch-compile"])
    cases = [Case(shape=(8, 3), seed=s) for s in range(64)]
    skipped = [backend.supports(c) for c in cases]
    assert 0 < sum(s is None for s in skipped) < 8  # about 1 in 32
    assert "CROSSBN_TORCH_COMPILE_SAMPLE=1 runs every case" in next(s for s in skipped if s)
    monkeypatch.setenv("CROSSBN_TORCH_COMPILE_SAMPLE", "1")
    assert all(backend.supports(c) is None for c in cases)
    monkeypatch.setenv("CROSSBN_TORCH_COMPILE_SAMPLE", "0")
    with pytest.raises(ValueError, match="CROSSBN_TORCH_COMPILE_SAMPLE='0': must be a whole number >= 1"):
        backend.supports(cases[0])
