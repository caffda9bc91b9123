"""The project's own known differences (crossbn/known/frameworks.toml) hold for the
framework releases it pins (constraints.txt): a strict run of the smoke
suite on every installed backend is green, and every finding is still in
the results and the report, marked known. An upgrade that changes a
finding turns this test red, which is the point."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the smoke suite on every backend

ROOT = Path(__file__).resolve().parent.parent
KNOWN = ROOT / "crossbn" / "known" / "frameworks.toml"


def test_every_smoke_finding_on_the_pinned_frameworks_is_known(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossbn",
            "run",
            "--suite",
            "smoke",
            "--known",
            str(KNOWN),
            "--strict",
            "-n",
            "2",
            "--no-conventions",
            "--progress",
            "off",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("CROSSBN_")},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    findings = [r for r in records if r["verdict"] in ("deviation", "nan-mismatch", "error", "crash", "timeout")]
    assert findings, "the pinned frameworks have findings; a run without any means nothing ran"
    assert all(r.get("known") for r in findings)
    index = (out / "index.html").read_text()
    assert f"Findings: 0 new, {len(findings)} known." in index
    # each finding is on its root cause's page, marked known, each page with the reason
    pages = [p.read_text() for p in (out / "findings").glob("*.html")]
    assert all("known difference" in p for p in pages)
    assert all(any(f["pytest_id"] in p for p in pages) for f in findings)
    check = subprocess.run(
        [sys.executable, "-m", "crossbn", "known", str(KNOWN), str(out)], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0 and f"{len(findings)} known finding(s), 0 new" in check.stdout, check.stdout
