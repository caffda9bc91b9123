"""Resource limits with real runs: a case over --max-case-bytes is refused
with its estimate, a worker past --worker-max-mb is recycled without
changing any result, and a run's temporary files go however it ends."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crossbn.execution.limits import BYTES_PER_ELEMENT_STEP
from crossbn.records.results import read, stable

MODULE = str(Path(__file__).parent / "backends" / "numpy_variants.py")
LITTER = """
[[group]]
name = "litter"
shape = [8, 3]
gradients = false
[group.axes]
seed = [1, 2, 16, 18]      # 16: a segfault, 18: os._exit (numpy_variants.FAULTS)
"""


def crossbn(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "crossbn", "run", "--no-conventions", "-n", "0", "--backend-module", MODULE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_a_case_over_the_limit_is_refused_with_its_estimate(tmp_path):
    limit = 64 * 1024
    proc = crossbn("--suite", "smoke", "--backends", "numpy-twopass", "--max-case-bytes", "64K", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    refused = kept = 0
    for r in read(tmp_path / "results.jsonl"):
        case = r["case"]
        # the documented model (crossbn/execution/limits.py): elements x steps x 256 bytes
        need = math.prod(case["shape"]) * (case["train_steps"] + case["eval_step"]) * BYTES_PER_ELEMENT_STEP
        if need > limit:
            assert r["verdict"] == "unsupported" and r["reason"].startswith("refused: estimated"), r["reason"]
            assert "--crossbn-max-case-bytes 64.0 KiB" in r["reason"] and not r["observables"]
            refused += 1
        else:
            assert not r["reason"].startswith("refused"), r["reason"]
            kept += 1
    assert refused and kept


@pytest.mark.parametrize(
    "option, value", [("--max-case-bytes", "lots"), ("--worker-max-mb", "-3"), ("--max-case-bytes", "1e999")]
)
def test_a_limit_that_is_not_a_size_is_a_usage_error(option, value, tmp_path):
    proc = crossbn("--suite", "smoke", "--backends", "numpy-twopass", option, value, "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"crossbn run: {option}: {value!r} is" in proc.stderr  # in the words of the command given


def test_a_worker_past_its_limit_is_recycled_and_results_do_not_change(tmp_path):
    runs = {}
    for limit in ("0", "1"):  # 0: never recycled; 1 MB: every case leaves the worker over it
        out = tmp_path / f"limit{limit}"
        proc = crossbn("--suite", "smoke", "--backends", "numpy-twopass", "--worker-max-mb", limit, "--out", str(out))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[limit] = read(out / "results.jsonl")
    ran = [r for r in runs["1"] if r["verdict"] != "unsupported"]
    assert ran and all(r["backend_info"].get("worker_recycled_mb", 0) > 1 for r in ran)
    assert not any("worker_recycled_mb" in r["backend_info"] for r in runs["0"])
    assert [stable(r) for r in runs["1"]] == [stable(r) for r in runs["0"]]


def _left(system_tmp: Path) -> list[str]:
    return sorted(
        str(p.relative_to(system_tmp)) for p in system_tmp.rglob("*") if p.name.startswith(("litter-", "crossbn-run-"))
    )


@pytest.mark.parametrize("n", ["0", pytest.param("2", marks=pytest.mark.slow)])  # -n 2 starts two xdist workers
def test_temporary_files_go_with_a_failing_run(n, tmp_path):
    """A backend that leaves a temporary file on every case, and segfaults
    and exits on two of them: after the run, nothing of it is left."""
    system_tmp, suite = tmp_path / "tmp", tmp_path / "litter.toml"
    system_tmp.mkdir()
    suite.write_text(LITTER)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossbn",
            "run",
            "--no-conventions",
            "-n",
            n,
            "--backend-module",
            MODULE,
            "--suite",
            str(suite),
            "--backends",
            "numpy-littering",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(system_tmp)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdicts = sorted(r["verdict"] for r in read(tmp_path / "out" / "results.jsonl"))
    assert verdicts == ["crash", "crash", "match", "match"]
    assert _left(system_tmp) == []


def test_a_killed_runs_temporary_files_go_with_the_next_run(tmp_path):
    system_tmp, suite = tmp_path / "tmp", tmp_path / "litter.toml"
    system_tmp.mkdir()
    suite.write_text(LITTER)
    env = {**os.environ, "TMPDIR": str(system_tmp)}
    argv = [
        sys.executable,
        "-m",
        "crossbn",
        "run",
        "--no-conventions",
        "-n",
        "0",
        "--backend-module",
        MODULE,
        "--suite",
        str(suite),
        "--backends",
        "numpy-littering",
    ]
    proc = subprocess.Popen(
        [*argv, "--out", str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not any(p.name.startswith("litter-") for p in system_tmp.rglob("*")):  # the run is under way
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it left a file"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # nothing of the run can clean up after this
    proc.wait(timeout=60)
    time.sleep(1.0)  # its backend worker notices its parent is gone and exits
    assert _left(system_tmp)  # what SIGKILL leaves ...
    again = subprocess.run(
        [*argv, "--out", str(tmp_path / "again")], env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert _left(system_tmp) == []  # ... the next run removes
