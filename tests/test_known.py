"""Known differences: the file's errors, and real runs where a planted
finding is known (xfail, or skip), recorded as known and split in the report."""

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossbn.records.known import KnownError, load

VARIANTS = str(Path(__file__).parent / "backends" / "numpy_variants.py")
SUITE = (
    "[[group]]\nname = 'far'\nshape = [64, 4, 8]\noffset_ratio = 1000.0\ngradients = false\n"
    "[group.axes]\nseed = [1, 2]\n"
)
KNOWN = """
[[known]]
backend = "numpy-onepass"
observable = "*.batch_var"
verdict = "deviation"
reason = "one-pass variance E[x^2]-E[x]^2 cancels at large offsets"
link = "https://example.invalid/issue/1"

[[known]]
backend = "numpy-twopass"
reason = "an entry that matches nothing"
"""


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[known]]\nbackend = 'x'\n", "#1: 'reason' is required"),
        ("[[known]]\nbackend = 'x'\nreason = 'r'\ncolour = 'red'\n", "#1: unknown field(s) colour"),
        (
            "[[known]]\nbackend = 'x'\nreason = 'r'\n[[known]]\nbackend = 3\nreason = 'r'\n",
            "#2: 'backend' must be a string, got int",
        ),
        ("[[known]]\nbackend = 'x'\nreason = 'r'\nverdict = 'match'\n", "#1: verdict 'match' is not a finding"),
        ("[[known]\n", "not valid TOML"),
        ("[known]\nbackend = 'x'\n", "'known' must be an array of tables"),
    ],
)
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
        [
            sys.executable,
            "-m",
            "crossbn",
            "run",
            "--suite",
            str(suite),
            "--backends",
            "numpy-onepass,numpy-twopass",
            "-n",
            "0",
            "--no-conventions",
            "--progress",
            "off",
            "--out",
            str(tmp_path / name),
            "--known",
            str(known),
            "--strict",
            *extra,
            "--",
            "-rxs",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CROSSBN_BACKEND_MODULE": VARIANTS},
    )


def test_known_findings_are_xfails_recorded_and_split_in_the_report(tmp_path):
    proc = _run(tmp_path, "run")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # --strict: only new findings fail
    assert "2 xfailed" in proc.stdout and "known difference #1: one-pass variance" in proc.stdout
    assert "matched nothing: #2 (backend=numpy-twopass" in proc.stdout
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    known = [r for r in records if r.get("known")]
    assert len(known) == 2 and all(r["backend"] == "numpy-onepass" and r["verdict"] == "deviation" for r in known)
    assert known[0]["known"] == {
        "entry": 1,
        "reason": "one-pass variance E[x^2]-E[x]^2 cancels at large offsets",
        "link": "https://example.invalid/issue/1",
    }
    index = (tmp_path / "run" / "index.html").read_text()
    assert "Findings: 0 new, 2 known." in index


def test_known_skip_turns_them_into_skips(tmp_path):
    proc = _run(tmp_path, "skip", "--known-skip")
    assert proc.returncode == 0 and "2 skipped" in proc.stdout and "xfailed" not in proc.stdout


def test_a_bad_known_file_is_a_usage_error(tmp_path):
    (tmp_path / "known.toml").write_text("[[known]]\nreason = 'r'\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossbn",
            "run",
            "--suite",
            "smoke",
            "--known",
            str(tmp_path / "known.toml"),
            "--out",
            str(tmp_path / "o"),
            "-n",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "crossbn run: --known:" in proc.stderr  # in the words of the command given
    assert "'backend' is required" in proc.stdout + proc.stderr


def _finding(**over):
    rec = {
        "backend": "keras-torch",
        "device": "cpu",
        "verdict": "deviation",
        "version": "keras 3.15.1 / torch 2.13.0",
        "pytest_id": "g-f32-8x4-cf-t2e-1234",
        "case_id": "1234",
        "case": {"dtype": "float32"},
        "localization": {"stage": "batch variance"},
        "diagnosis": {"formulation": "variance=one-pass"},
        "observables": {"train0.batch_var": {"verdict": "deviation"}, "train0.y": {"verdict": "match"}},
    }
    return {**rec, **over}


@pytest.mark.parametrize(
    "field, yes, no",
    [
        ("dtype", "float32", "float16"),
        ("stage", "batch var*", "normalized"),
        ("formulation", "*one-pass*", "*welford*"),
        ("version", "keras 3.15.*", "keras 3.10.*"),
        ("observable", "*.batch_var", "*.y"),  # only failing observables count
        ("case", "g-f32-*", "g-f16-*"),
    ],
)
def test_every_given_field_must_hold(field, yes, no):
    from crossbn.records.known import Known

    assert Known(1, "keras-*", "r", **{field: yes}).matches(_finding())
    assert not Known(1, "keras-*", "r", **{field: no}).matches(_finding())
    assert not Known(1, "keras-*", "r", **{field: yes}).matches(_finding(verdict="match"))


def test_known_command_checks_finished_results(tmp_path):
    proc = _run(tmp_path, "run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cmd = [sys.executable, "-m", "crossbn", "known"]
    ok = subprocess.run([*cmd, str(tmp_path / "known.toml"), str(tmp_path / "run")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 known finding(s), 0 new" in ok.stdout and "matched nothing" in ok.stdout
    # pinned to releases the run is not: the same findings are new again, grouped as an entry would be written
    (tmp_path / "pinned.toml").write_text(
        KNOWN.replace('verdict = "deviation"', 'verdict = "deviation"\nversion = "9.*"', 1)
    )
    new = subprocess.run([*cmd, str(tmp_path / "pinned.toml"), str(tmp_path / "run")], capture_output=True, text=True)
    assert new.returncode == 1, new.stdout + new.stderr
    assert "0 known finding(s), 2 new" in new.stdout
    assert "     2  numpy-onepass deviation float32 | batch variance |" in new.stdout
    bad = subprocess.run(
        [*cmd, str(tmp_path / "known.toml"), str(tmp_path / "nowhere")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "nowhere: no results file" in bad.stderr


def test_entries_about_what_the_run_did_not_include_are_counted_not_listed(tmp_path):
    """A run of two backends against the built-in file: the entries about other
    backends are one line, not a screenful of "matched nothing"."""
    from crossbn.records.known import load

    entries = load("frameworks")
    torch_only = [k for k in entries if k.in_scope(["torch"], ["cpu"], ["float16"], ["smoke-f16-16x4-cf-t2e-43b27cf4"])]
    assert 0 < len(torch_only) < len(entries)
    assert all(fnmatch.fnmatchcase("torch", k.backend) for k in torch_only)
    numpy = str(Path(__file__).parent / "backends" / "numpy_variants.py")
    proc = subprocess.run(
        [sys.executable, "-m", "crossbn", "run", "--suite", "smoke", "--backend-module", numpy,
         "--backends", "numpy-twopass", "--known", "frameworks", "--out", str(tmp_path / "r"), "-n", "0",
         "--no-conventions", "--progress", "off"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "  matched nothing: #" not in proc.stdout
    assert f"{len(entries)} more matched nothing: about backends, devices, dtypes or cases" in proc.stdout
