"""Fault isolation with real worker processes: crash, hang and exceptions
become verdicts, and the backend keeps serving afterwards."""

from pathlib import Path

import pytest

from crossbn.backends import BackendError, discover, load, resolve
from crossbn.execution import wire
from crossbn.execution.runner import WorkerPool
from crossbn.spec.case import Case
from crossbn.verdict.judge import judge

MODULE = str(Path(__file__).parent / "backends" / "numpy_variants.py")


@pytest.fixture
def faulty():
    specs = discover((MODULE,))
    backend = load(specs["numpy-faulty"])
    pool = WorkerPool(specs, {"numpy-faulty": backend})
    yield lambda seed, timeout=60.0: judge(
        Case(shape=(8, 3), gradients=False, seed=seed), "numpy-faulty", backend, "cpu", pool, timeout
    )
    pool.close()


def _seed(fault):
    from crossbn.backends import import_file

    return next(seed for seed, f in import_file(MODULE).FAULTS.items() if f == fault)


@pytest.mark.parametrize("fault", ["abort", "segfault", "exit", "hard-exit"])
def test_a_dying_process_is_a_crash_and_the_worker_restarts(faulty, fault):
    rec = faulty(_seed(fault))
    assert rec["verdict"] == "crash" and "worker process died" in rec["reason"], rec["reason"]
    assert faulty(1)["verdict"] == "match"  # a fresh worker serves the next case


def test_hang_is_a_timeout_and_the_worker_restarts(faulty):
    rec = faulty(_seed("hang"), timeout=3.0)
    assert rec["verdict"] == "timeout" and "3 s" in rec["reason"]
    assert faulty(2)["verdict"] == "match"


def test_exception_is_an_error_with_the_message_and_the_worker_survives(faulty):
    rec = faulty(_seed("raise"))
    assert rec["verdict"] == "error"
    assert "RuntimeError: deliberate failure inside the framework" in rec["reason"]
    assert "Traceback" in rec["reason"]
    assert faulty(3)["verdict"] == "match"


@pytest.mark.parametrize(
    "fault, message",
    [
        ("wrong-shape", "train0.y has shape [3, 8], expected [8, 3]"),
        ("wrong-dtype", "train0.y is float64, expected float32"),
        ("not-arrays", "train0.y: a str224 array cannot be sent"),
    ],
)
def test_malformed_outputs_are_an_error_naming_the_observable(faulty, fault, message):
    rec = faulty(_seed(fault))
    assert rec["verdict"] == "error" and message in rec["reason"], rec["reason"]
    assert faulty(4)["verdict"] == "match"


def test_a_second_device_is_compared_with_the_cpu_of_the_same_backend():
    specs = discover((MODULE,))
    backend = load(specs["numpy-twodevice"])
    pool = WorkerPool(specs, {"numpy-twodevice": backend})
    try:
        good = judge(Case(shape=(16, 3), gradients=False), "numpy-twodevice", backend, "cuda", pool)
        bad = judge(Case(shape=(16, 3), gradients=False, offset_ratio=1e3), "numpy-twodevice", backend, "cuda", pool)
        on_cpu = judge(Case(shape=(16, 3), gradients=False), "numpy-twodevice", backend, "cpu", pool)
    finally:
        pool.close()
    assert good["cross_device"]["against"] == "cpu" and good["cross_device"]["verdict"] in ("agree", "bitwise")
    assert bad["cross_device"]["verdict"] == "disagree"
    assert bad["cross_device"]["observables"]["train0.batch_var"]["ratio"] > 1
    assert on_cpu["cross_device"] is None


def test_unsupported_case_is_recorded_with_reason(faulty):
    specs = discover((MODULE,))
    backend = load(specs["numpy-twopass"])
    pool = WorkerPool(specs, {"numpy-twopass": backend})
    try:
        rec = judge(Case(shape=(8, 3), dtype="float16"), "numpy-twopass", backend, "cpu", pool)
        assert rec["verdict"] == "unsupported" and rec["reason"] == "float32 only"
        rec = judge(Case(shape=(8, 3), gradients=False), "numpy-twopass", backend, "cuda", pool)
        assert rec["verdict"] == "unsupported" and "device 'cuda' is not available" in rec["reason"]
    finally:
        pool.close()


def test_missing_framework_is_unsupported_with_the_reason():
    specs = discover((MODULE,))
    backend = load(specs["numpy-notinstalled"])
    pool = WorkerPool(specs, {"numpy-notinstalled": backend})
    rec = judge(Case(shape=(8, 3)), "numpy-notinstalled", backend, "cpu", pool)
    assert rec["verdict"] == "unsupported"
    assert "'crossbn_no_such_framework' is not installed" in rec["reason"]
    assert "numpy-notinstalled" not in pool._workers  # no worker process was started for it


def test_unknown_backend_is_named():
    with pytest.raises(BackendError, match="unknown backend\\(s\\) nosuch; known: .*torch"):
        resolve("torch,nosuch", discover())


def test_bad_backend_module_is_named(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("import nosuchmodule_xyz\n")
    with pytest.raises(BackendError, match="broken.py: import failed: ModuleNotFoundError"):
        discover((str(bad),))
    with pytest.raises(BackendError, match="no such file"):
        discover((str(tmp_path / "missing.py"),))


def test_wire_roundtrip_keeps_dtype_and_bytes():
    import ml_dtypes
    import numpy as np

    arrays = {
        "a": np.arange(6, dtype=np.float16).reshape(2, 3),
        "b": np.array([1.5, -2.25], dtype=ml_dtypes.bfloat16),
        "c": np.zeros((0, 3)),
    }
    back = wire.decode(wire.encode(arrays))
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and back[k].tobytes() == v.tobytes()


def test_two_backend_files_with_the_same_name_are_both_loaded(tmp_path):
    for sub, name in (("a", "mine-a"), ("b", "mine-b")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "mine.py").write_text(
            f"from crossbn.backends.base import Backend\nclass B(Backend):\n    name = {name!r}\n"
        )
    specs = discover((str(tmp_path / "a" / "mine.py"), str(tmp_path / "b" / "mine.py")))
    assert load(specs["mine-a"]).name == "mine-a" and load(specs["mine-b"]).name == "mine-b"


def test_broken_entry_point_spec_is_named():
    with pytest.raises(BackendError, match="'nosuchpkg_xyz.mod:Thing' cannot be loaded: ModuleNotFoundError"):
        load("nosuchpkg_xyz.mod:Thing")
