"""Quiet output: the frameworks' own log lines, their warnings and xdist's
start-up line stay out of `crossbn run` and `crossbn conventions` unless
`-v` (CROSSBN_VERBOSE=1) asks for them; crossbn's own lines, a dying
worker's last words and pytest's summary always show
(crossbn/execution/quiet.py). Real processes throughout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from crossbn.backends import import_file

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = Path(__file__).parent / "backends"
NOISY = import_file(str(BACKENDS / "noisy.py"))

# what the frameworks and pytest print that quiet output must not hold
ABSL_LINE = re.compile(r"^[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ", re.M)
NOT_QUIET = (
    "bringing up nodes",
    "PytestAssertRewriteWarning",
    "absl::InitializeLog",
    "WARNING:tensorflow:",
    "RuntimeWarning",
    "warnings summary",
)

# two cases on the noisy backend in its worker: one that runs, one that aborts
_JUDGE_TWO = f"""
from crossbn.backends import discover, load
from crossbn.execution.runner import WorkerPool
from crossbn.spec.case import Case
from crossbn.verdict.judge import judge

specs = discover(({str(BACKENDS / "noisy.py")!r},))
backend = load(specs["numpy-noisy"])
pool = WorkerPool(specs, {{"numpy-noisy": backend}})
try:
    for seed in (1, 13):
        print(judge(Case(shape=(8, 3), gradients=False, seed=seed), "numpy-noisy", backend, "cpu", pool, 60.0)["verdict"])
finally:
    pool.close()
"""


def _env(verbose: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CROSSBN_VERBOSE"}
    if verbose:
        env["CROSSBN_VERBOSE"] = "1"
    return env


def _crossbn(*args: str) -> subprocess.CompletedProcess:
    """`crossbn ARGS` with CROSSBN_VERBOSE unset: only a -v among ARGS asks for the frameworks' output."""
    return subprocess.run(
        [sys.executable, "-m", "crossbn", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=_env(False),
    )


# lines seen from TensorFlow 2.21, torch 2.13 and the ones users meet on GPU machines
DROPPED = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796398685.970073    6776 port.cc:153] oneDNN custom operations are on. You may see slightly",
    "E0000 00:00:1796398688.896659    6776 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)",
    "W1204 15:38:17.930000 6920 .venv/lib/python3.11/site-packages/torch/onnx/_internal/exporter/"
    "_registration.py:107] torchvision is not installed. Skipping torchvision::nms",
    "E1204 15:38:22.954000 6920 .venv/lib/python3.11/site-packages/torch/export/_trace.py:1323] always_classified "
    "is unsupported.",
    "2024-03-01 10:00:00.123456: E external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc:9261] Unable to "
    "register cuDNN factory: Attempting to register factory for plugin cuDNN when one has already been registered",
    "2024-03-01 10:00:01.123456: W tensorflow/compiler/tf2tensorrt/utils/py_utils.cc:38] TF-TRT Warning: Could "
    "not find TensorRT",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the "
    "appropriate compiler flags.",
]
KEPT = [
    "F0000 00:00:1796398688.896659    6776 cuda_dnn.cc:1] Check failed: status == CUDNN_STATUS_SUCCESS",
    "Fatal Python error: Segmentation fault",
    "Traceback (most recent call last):",
    "RuntimeError: CUDA error: an illegal memory access was encountered",
    "crossbn: 4/36 done (11%), 0 findings, 0:01 elapsed",
    "E0000 is not a log line without its time and place",
]


def test_the_filter_drops_framework_log_lines_and_keeps_everything_else():
    from crossbn.execution.quiet import is_noise

    assert [line for line in DROPPED if not is_noise(line + "\n")] == []
    assert [line for line in KEPT if is_noise(line + "\n")] == []


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_a_workers_framework_output_is_filtered_and_its_last_words_are_kept(verbose):
    """The worker's stderr, at the level of file descriptors: the frameworks'
    C++ log lines, a Python warning and a framework logger's warning go
    unless asked for; any other line stays, and so does what a worker writes
    just before it aborts (the filter outlives it)."""
    proc = subprocess.run(
        [sys.executable, "-c", _JUDGE_TWO], capture_output=True, text=True, timeout=300, cwd=ROOT, env=_env(verbose)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["match", "crash"], proc.stdout + proc.stderr
    err = proc.stderr
    assert err.count(NOISY.OWN_LINE) == 2 and NOISY.LAST_WORDS in err, err
    framework = NOISY.FRAMEWORK_LINES.decode().splitlines()
    python_level = ["noisy: a framework's UserWarning", "noisy: a framework logger's warning"]
    for line in framework + python_level:
        assert (line in err) == verbose, f"{line!r} {'missing with' if verbose else 'shown without'} -v:\n{err}"


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_xdists_start_up_line_shows_once_with_v_and_not_without(tmp_path, verbose):
    """Under `crossbn run`'s -q, xdist's status line is "bringing up nodes..."
    and, with no terminal, it wrote it twice; now never, and once with -v."""
    module = str(BACKENDS / "numpy_variants.py")
    args = ("--suite", "smoke", "--backend-module", module, "--backends", "numpy-twopass,numpy-onepass", "-n", "2")
    proc = _crossbn("run", *args, "--no-conventions", "--out", str(tmp_path), *(["-v"] if verbose else []))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert out.count("bringing up nodes...") == (1 if verbose else 0), out
    assert re.search(r"\d+ failed, \d+ passed", out) and "crossbn verdicts" in out, out


@pytest.mark.slow
def test_a_run_and_its_conventions_are_quiet_and_v_brings_the_frameworks_back(tmp_path):
    """A real run with -n 2 and its conventions step, on TensorFlow and the
    ONNX reference (whose probes make NumPy warn): none of the frameworks'
    lines, no xdist start-up line, no pytest warnings; crossbn's own lines
    and pytest's summary are there. With -v, the warnings are back."""
    run = _crossbn(
        "run", "--suite", "smoke", "--backends", "tf-nn,onnx-reference-opset9", "-n", "2", "--out", str(tmp_path / "r")
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    for text in NOT_QUIET:
        assert text not in out, f"{text!r} in a quiet run:\n{out}"
    assert not ABSL_LINE.search(out), out
    assert re.search(r"\d+ failed, \d+ passed", out) and "crossbn verdicts" in out, out
    assert "Observed conventions" in out and re.search(r"crossbn conventions: \d+ finding\(s\) in", out), out

    loud = _crossbn("conventions", "-v", "--backends", "onnx-reference-opset9", "--out", str(tmp_path / "c"))
    assert loud.returncode == 0, loud.stdout + loud.stderr
    assert "RuntimeWarning: overflow encountered" in loud.stderr, loud.stdout + loud.stderr
