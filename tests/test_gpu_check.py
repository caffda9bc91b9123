"""tools/gpu-check, the one command that runs every CUDA path on a GPU
machine, run here with `--devices cpu` as its stand-in: the same steps, the
same import path (crossbn from the working tree, carried wheels installed
without an index), the same files, so the GPU run cannot fail for a reason
found without a GPU. The summary's arithmetic is checked on records that
carry cross_device, which only a GPU run makes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from crossbn.records import device_summary

pytestmark = pytest.mark.slow  # the GPU check end to end, with its CPU stand-in

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "gpu-check"
# one backend of each adapter with a cuda path (torch, Inductor, Keras on JAX
# and on PyTorch, Flax nnx under jit, ONNX Runtime), plus the carried one
BACKENDS = "torch,torch-compile,keras-jax,keras-torch,flax-nnx-jit,onnxruntime-opset15,carried-numpy"


def gpu_check(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSBN_")}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def carried_wheel(folder: Path) -> Path:
    """A wheel, as one carries to a machine without an index, holding a
    backend with a cuda path registered through crossbn's entry point: when
    it runs, the carried wheel reached the run and its workers."""
    source = (ROOT / "examples" / "numpy_backend.py").read_text() + (
        "\n\nclass CarriedNumpy(NumpyFloat32):\n    name = 'carried-numpy'\n    devices = ('cpu', 'cuda')\n"
    )
    info = "crossbn_carried-1.0.dist-info"
    files = {
        "crossbn_carried.py": source,
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: crossbn-carried\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": "[crossbn.backends]\ncarried-numpy = crossbn_carried:CarriedNumpy\n",
    }
    record = [
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
        f"{len(text.encode())}"
        for name, text in files.items()
    ]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    folder.mkdir()
    wheel = folder / "crossbn_carried-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return wheel


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_gpu_check_runs_end_to_end_with_the_cpu_standing_in(tmp_path):
    carried_wheel(tmp_path / "wheels")
    out, archive = tmp_path / "out", tmp_path / "gpu-check.tar.gz"
    proc = gpu_check(
        "--devices",
        "cpu",
        "--out",
        str(out),
        "--backends",
        BACKENDS,
        "-n",
        "2",
        "--wheels",
        str(tmp_path / "wheels"),
        "--archive",
        str(archive),
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    assert "installed 1 carried wheel(s): crossbn_carried-1.0-py3-none-any.whl" in proc.stdout
    # every step wrote what it owes: results and run.json of both suites, the
    # conventions (in the smoke run's folder), the merged report, the summary
    for name in (
        "smoke/results.jsonl",
        "smoke/run.json",
        "smoke/conventions.jsonl",
        "models/results.jsonl",
        "models/run.json",
        "report/index.html",
        "summary.txt",
        "summary.json",
    ):
        assert (out / name).is_file(), name
    smoke, models = records(out / "smoke" / "results.jsonl"), records(out / "models" / "results.jsonl")
    chosen = set(BACKENDS.split(","))
    assert {r["backend"] for r in smoke} == chosen
    assert {r["backend"] for r in models} <= chosen and {"torch", "keras-jax", "flax-nnx-jit"} <= {
        r["backend"] for r in models
    }
    assert {r["device"] for r in smoke + models} == {"cpu"}
    # the carried backend ran in the workers, not just installed: judged results
    assert any(r["backend"] == "carried-numpy" and r["verdict"] == "match" for r in smoke)
    conventions = records(out / "smoke" / "conventions.jsonl")
    assert {r["backend"] for r in conventions} == chosen and {r["device"] for r in conventions} == {"cpu"}
    # the summary counts what the results files hold, backend by backend
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == chosen
    for backend, row in summary.items():
        mine = [r for r in smoke + models if r["backend"] == backend]
        assert row["results"] == len(mine)
        assert row["verdicts"] == dict(Counter(r["verdict"] for r in mine))
        assert row["judged"] == sum(r["verdict"] != "unsupported" for r in mine)
    text = (out / "summary.txt").read_text()
    for step in ("smoke: ok", "models: ok", "conventions: ok", "report: ok"):
        assert step in text
    index = (out / "report" / "index.html").read_text()
    assert "carried-numpy" in index and "flax-nnx-jit" in index
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"out/summary.txt", "out/smoke/results.jsonl", "out/report/index.html"} <= names


def test_a_step_past_its_budget_is_stopped_and_what_finished_is_kept(tmp_path):
    out = tmp_path / "out"
    # torch-compile's first compile alone takes longer than the smoke step's share of 12 s
    proc = gpu_check(
        "--devices", "cpu", "--out", str(out), "--backends", "torch-compile", "-n", "1", "--budget", "12", timeout=300
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    text = (out / "summary.txt").read_text()
    assert "smoke: stopped at its budget" in text
    run = json.loads((out / "smoke" / "run.json").read_text())
    assert run["complete"] is False
    assert (out / "summary.json").is_file()


def test_list_names_every_backend_with_a_cuda_path_that_imports_here(tmp_path):
    carried_wheel(tmp_path / "wheels")
    proc = gpu_check("--list", "--wheels", str(tmp_path / "wheels"), timeout=300)
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.splitlines()[-2].removeprefix("would run: ").split(", ")
    declared = subprocess.run(
        [sys.executable, "-m", "crossbn", "backends", "--markdown"], capture_output=True, text=True, check=True
    ).stdout
    cuda = {row.split("`")[1] for row in declared.splitlines() if row.startswith("| `") and "cuda" in row.split("|")[3]}
    assert cuda and set(listed) == cuda | {"carried-numpy"}


@pytest.mark.parametrize(
    "args, says",
    [
        (("--devices", "gpu", "--out", "x"), "--devices 'gpu'"),
        (("--out", "x", "--backends", "torch,no-such"), "unknown backend(s) no-such"),
        (("--out", "x", "--wheels", "no-such-folder"), "--wheels no-such-folder: no such folder"),
        (("--out", "x", "--budget", "0"), "--budget 0.0"),
        (("--out", "x", "-n", "0"), "-n 0"),
        ((), "give --out DIR"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(args, says):
    proc = gpu_check(*args, timeout=120)
    assert proc.returncode == 2 and says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (ROOT / "x").exists()


def test_a_folder_that_is_not_empty_is_refused(tmp_path):
    (tmp_path / "old.txt").write_text("a previous run")
    proc = gpu_check("--out", str(tmp_path), timeout=120)
    assert proc.returncode == 2 and "not empty" in proc.stderr


def _rec(backend, verdict, cross=None, device="cuda"):
    return {
        "backend": backend,
        "device": device,
        "verdict": verdict,
        "reason": "why" if verdict == "unsupported" else "",
        "cross_device": {"against": "cpu", "verdict": cross} if cross else None,
    }


def test_the_summary_counts_each_cuda_result_against_its_cpu_result():
    recs = [
        _rec("torch", "match", "bitwise"),
        _rec("torch", "match", "agree"),
        _rec("torch", "deviation", "disagree"),
        _rec("torch", "match", "crash"),
        _rec("torch", "unsupported"),
        _rec("torch", "match", device="cpu"),
        _rec("flax-nnx", "convention", "agree"),
    ]
    rows = device_summary.summarize(recs, "cuda")
    assert list(rows) == ["flax-nnx", "torch"]
    torch = rows["torch"]
    assert (torch["results"], torch["judged"]) == (5, 4)
    assert torch["verdicts"] == Counter(match=3, deviation=1, unsupported=1)
    assert torch["cross"] == Counter({"bitwise": 1, "within bound": 1, "beyond bound": 1, "crash": 1})
    text = "\n".join(device_summary.lines(rows, "cuda"))
    assert "1 bitwise, 1 within bound, 1 beyond bound, 1 crash" in text
    assert "0 bitwise, 1 within bound, 0 beyond bound" in text  # flax-nnx
    assert "torch" in text.split("not judged on cuda")[1]
    cpu = "\n".join(device_summary.lines(device_summary.summarize(recs, "cpu"), "cpu"))
    assert "bitwise" not in cpu  # the CPU is not held against itself
