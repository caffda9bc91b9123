"""Known differences: the file's errors, and real runs where a planted
finding is known (xfail, or skip), recorded as known and split in the report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossbn.known import KnownError, load

VARIANTS = str(Path(__file__).parent / "backends" / "numpy_variants.py")
SUITE = ("[[group]]\nname = 'far'\nshape = [64, 4, 8]\noffset_ratio = 1000.0\ngradients = false\n"
         "[group.axes]\nseed = [1, 2]\n")
KNOWN = '''
[[known]]
backend = "numpy-onepass"
observable = "*.batch_var"
verdict = "deviation"
reason = "one-pass variance E[x^2]-E[x]^2 cancels at large offsets"
link = "https://example.invalid/issue/1"

[[known]]
backend = "numpy-twopass"
reason = "an entry that matches nothing"
'''


@pytest.mark.parametrize("text, message", [
    ("[[known]]\nbackend = 'x'\n", "#1: 'reason' is required"),
    ("[[known]]\nbackend = 'x'\nreason = 'r'\ncolour = 'red'\n", "#1: unknown field(s) colour"),
    ("[[known]]\nbackend = 'x'\nreason = 'r'\n[[known]]\nbackend = 3\nreason = 'r'\n",
     "#2: 'backend' must be a string, got int"),
    ("[[known]]\nbackend = 'x'\nreason = 'r'\nverdict = 'match'\n", "#1: verdict 'match' is not a finding"),
    ("[[known]\n", "not valid TOML"),
    ("[known]\nbackend = 'x'\n", "'known' must be an array of tables"),
])
def test_bad_files_name_the_file_and_the_entry(tmp_path, text, message):
    f = tmp_path / "known.toml"
    f.write_text(text)
    with pytest.raises(KnownError, match="known.toml") as e:
        load(f)
    assert message in str(e.value)


def _run(tmp_path, name, *extra):
    suite = tmp_path / "far.toml"
    suite.write_text(SUITE)
    known = tmp_path / "known.toml"
    known.write_text(KNOWN)
    return subprocess.run(
        [sys.executable, "-m", "crossbn.cli", "run", "--suite", str(suite), "--backends", "numpy-onepass,numpy-twopass",
         "-n", "0", "--no-conventions", "--progress", "off", "--out", str(tmp_path / name), "--known", str(known),
         "--strict", *extra, "--", "-rxs"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "CROSSBN_BACKEND_MODULE": VARIANTS})


def test_known_findings_are_xfails_recorded_and_split_in_the_report(tmp_path):
    proc = _run(tmp_path, "run")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # --strict: only new findings fail
    assert "2 xfailed" in proc.stdout and "known difference #1: one-pass variance" in proc.stdout
    assert "matched nothing: #2 (backend=numpy-twopass" in proc.stdout
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    known = [r for r in records if r.get("known")]
    assert len(known) == 2 and all(r["backend"] == "numpy-onepass" and r["verdict"] == "deviation" for r in known)
    assert known[0]["known"] == {"entry": 1, "reason": "one-pass variance E[x^2]-E[x]^2 cancels at large offsets",
                                 "link": "https://example.invalid/issue/1"}
    index = (tmp_path / "run" / "index.html").read_text()
    assert "Findings: 0 new, 2 known." in index


def test_known_skip_turns_them_into_skips(tmp_path):
    proc = _run(tmp_path, "skip", "--known-skip")
    assert proc.returncode == 0 and "2 skipped" in proc.stdout and "xfailed" not in proc.stdout


def test_a_bad_known_file_is_a_usage_error(tmp_path):
    (tmp_path / "known.toml").write_text("[[known]]\nreason = 'r'\n")
    proc = subprocess.run([sys.executable, "-m", "crossbn.cli", "run", "--suite", "smoke", "--known",
                           str(tmp_path / "known.toml"), "--out", str(tmp_path / "o"), "-n", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--crossbn-known:" in proc.stdout + proc.stderr
    assert "'backend' is required" in proc.stdout + proc.stderr
