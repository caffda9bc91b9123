"""Baselines end to end: real runs of a backend that drifts between them
(tests/backends/drifting.py), saved, compared, and the exit status."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossbn.upgrade.baseline import classify

BACKENDS = Path(__file__).parent / "backends"
MODULES = os.pathsep.join(str(BACKENDS / f) for f in ("drifting.py", "numpy_variants.py"))
SUITE = "[[group]]\nname = 'g'\nshape = [16, 3]\ngradients = false\n[group.axes]\nseed = [1, 2, 3]\n"


def crossbn(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "crossbn", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "CROSSBN_BACKEND_MODULE": MODULES, **(env or {})},
    )


def run(tmp_path, name, drift="0", version="1.0", *extra, code=0):
    suite = tmp_path / "g.toml"
    suite.write_text(SUITE)
    proc = crossbn(
        "run",
        "--suite",
        str(suite),
        "--backends",
        "numpy-drifting,numpy-twopass",
        "-n",
        "0",
        "--no-conventions",
        "--progress",
        "off",
        "--out",
        str(tmp_path / name),
        *extra,
        env={"CROSSBN_DRIFT": drift, "CROSSBN_DRIFT_VERSION": version},
        cwd=tmp_path,
    )
    assert proc.returncode == code, proc.stdout + proc.stderr
    return tmp_path / name


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baseline")
    first = run(tmp, "first")
    proc = crossbn("baseline", "save", "v1", str(first), "--dir", str(tmp / "baselines"))
    assert proc.returncode == 0, proc.stderr
    return tmp


def compare(tmp, new):
    return crossbn("compare", "v1", str(new), "--dir", str(tmp / "baselines"), "--show", "100")


def lines_of(proc, cls):
    """The listed results of one class (not the count line)."""
    return [line for line in proc.stdout.splitlines() if line.strip().startswith(cls + " ") and "/cpu " in line]


def test_baseline_is_sorted_json_lines_with_digests(saved):
    lines = (saved / "baselines" / "v1" / "baseline.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) == 6
    assert [(e["case_id"], e["backend"]) for e in entries] == sorted((e["case_id"], e["backend"]) for e in entries)
    assert all(e["digests"] and e["verdict"] == "match" for e in entries)
    meta = json.loads((saved / "baselines" / "v1" / "meta.json").read_text())
    assert meta["backends"]["numpy-drifting/cpu"] == "1.0" and meta["run"]["suite"].endswith("g.toml")


def test_an_unchanged_rerun_has_no_regression(saved):
    proc = compare(saved, run(saved, "again"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = {
        line.split()[0]: int(line.split()[1])
        for line in proc.stdout.splitlines()[1:]
        if line.startswith("  ") and line.split()[1].isdigit()
    }
    assert counts == {"unchanged": 6}


def test_a_new_version_that_changes_bits_within_bound_is_changed(saved):
    proc = compare(saved, run(saved, "bits", drift="1e-7", version="1.1"))
    assert proc.returncode == 0, proc.stdout
    changed = lines_of(proc, "changed")
    assert len(changed) == 3 and all("numpy-drifting/cpu" in line and "(1.0 -> 1.1)" in line for line in changed)


def test_a_planted_drift_is_a_regression_and_fails(saved):
    proc = compare(saved, run(saved, "drift", drift="1e-2", version="2.0"))
    assert proc.returncode == 1, proc.stdout
    regressed = lines_of(proc, "regressed")
    assert len(regressed) == 3 and all(
        "numpy-drifting/cpu" in line and "match -> deviation" in line for line in regressed
    )
    # and back: against the drifted run as the baseline, the fix is "fixed", not a failure
    crossbn("baseline", "save", "drifted", str(saved / "drift"), "--dir", str(saved / "baselines"))
    back = crossbn("compare", "drifted", str(saved / "first"), "--dir", str(saved / "baselines"))
    assert back.returncode == 0 and len(lines_of(back, "fixed")) == 3


def test_classes_of_failing_pairs():
    base = {"verdict": "deviation", "ratio": 10.0, "digests": {"y": "a"}}
    assert classify(base, dict(base, ratio=25.0, digests={"y": "b"})) == "regressed"
    assert classify(base, dict(base, ratio=15.0, digests={"y": "b"})) == "changed"
    assert classify(base, dict(base, ratio=4.0, digests={"y": "b"})) == "improved"
    assert classify(base, dict(base)) == "unchanged"
    assert classify(None, base) == "new" and classify(base, None) == "removed"


def test_bad_sources_are_named(tmp_path):
    proc = crossbn("compare", "nosuch", str(tmp_path), "--dir", str(tmp_path))
    assert proc.returncode == 2 and "nosuch: neither a baseline" in proc.stderr
    proc = crossbn("baseline", "save", "../x", str(tmp_path))
    assert proc.returncode == 2 and "plain folder name" in proc.stderr
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--pyargs",
            "crossbn.conformance",
            "--crossbn-suite",
            "smoke",
            "--crossbn-compare",
            "v1",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 4 and "--crossbn-compare: needs --crossbn-out" in proc.stderr


def test_run_compare_writes_the_comparison_into_the_report_and_fails_on_regressions(saved):
    same = run(saved, "same-compared", "0", "1.0", "--compare", "v1")  # baselines/v1 under the working folder
    assert json.loads((same / "comparison.json").read_text())["counts"] == {"unchanged": 6}
    drifted = run(saved, "drift-compared", "1e-2", "2.0", "--compare", "v1", code=1)
    comparison = json.loads((drifted / "comparison.json").read_text())
    assert comparison["counts"]["regressed"] == 3 and comparison["counts"]["unchanged"] == 3
    assert 'id="comparison"' in (drifted / "index.html").read_text()
    page = (drifted / "comparison.html").read_text()
    assert page.count('class="c-regressed"') == 3 and "1.0 → 2.0" in page
