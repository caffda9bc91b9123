"""The summary a resumed run prints covers its whole run folder: the
records from before the interruption and the ones run now, and says how
many were resumed (crossbn/app/plugin.py). Real `crossbn run` processes on
the NumPy test backends; the interruption is the run folder losing one
backend's records, as a run stopped after its first backend would have."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from crossbn.records.results import read

ROOT = Path(__file__).resolve().parents[1]
MODULE = str(Path(__file__).parent / "backends" / "numpy_variants.py")
FIRST, SECOND = "numpy-twopass", "numpy-onepass"


def _crossbn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crossbn", *args], capture_output=True, text=True, timeout=600, cwd=ROOT
    )


def _verdicts(stdout: str) -> list[str]:
    """The lines of the "crossbn verdicts" section, up to the results line."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"=+ crossbn verdicts =+", line))
    end = next(i for i, line in enumerate(lines) if i > start and line.startswith("results: "))
    return lines[start + 1 : end]


def test_a_resumed_runs_summary_covers_the_whole_run_folder(tmp_path):
    out = tmp_path / "run"
    common = ("-n", "0", "--no-conventions", "--progress", "off")
    whole = _crossbn(
        "run", "--suite", "smoke", "--backend-module", MODULE, "--backends", f"{FIRST},{SECOND}", "--out", str(out),
        "--diagnosis", "each", *common,
    )  # fmt: skip
    assert whole.returncode == 0, whole.stdout + whole.stderr
    expected = _verdicts(whole.stdout)
    table = [line.split()[0] for line in expected[1:3]]
    assert table == [SECOND, FIRST], expected  # both backends, each with its counts

    # stopped after the first backend: the second one's records are not there
    records = read(out / "results.jsonl")
    kept = [r for r in records if r["backend"] == FIRST]
    assert 0 < len(kept) < len(records)
    for path in out.glob("results*.jsonl"):  # the merged file and the process's own part file
        path.write_text("".join(json.dumps(r) + "\n" for r in read(path) if r["backend"] == FIRST))
    info = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**info, "complete": False}))

    resumed = _crossbn("run", "--resume", str(out), *common)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    got = _verdicts(resumed.stdout)
    said = (
        f"resumed: {len(kept)} results from before the interruption, {len(records) - len(kept)} run now; "
        f"the summary covers all {len(records)}"
    )
    assert said in got, "\n".join(got)
    assert [line for line in got if line != said] == expected, "\n".join(got)
