"""The custom-backend example (examples/numpy_backend.py, docs/backends.md), run as a user would run it."""

import subprocess
import sys
from pathlib import Path

from crossbn.records.results import read

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "numpy_backend.py"


def test_example_backend_runs_through_the_command_line_and_matches(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossbn",
            "run",
            "--no-conventions",
            "--backend-module",
            str(EXAMPLE),
            "--backends",
            "numpy-float32",
            "--suite",
            "smoke",
            "-n",
            "0",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = read(tmp_path / "results.jsonl")
    verdicts = {r["pytest_id"]: r["verdict"] for r in records}
    assert set(verdicts.values()) == {"match", "unsupported"}, verdicts
    # float64 is declared out of its reach (it computes in float32) and says so
    assert all("does not run float64" in r["reason"] for r in records if r["verdict"] == "unsupported")
    # every other dtype, training and eval, forward and backward, was judged
    matched = [r for r in records if r["verdict"] == "match"]
    assert {r["case"]["dtype"] for r in matched} == {"float32", "float16", "bfloat16"}
    assert all(
        {"train0.dx", "train0.running_var"} <= set(r["observables"]) for r in matched if r["case"]["train_steps"]
    )
