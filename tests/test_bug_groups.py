"""Findings grouped by root cause (crossbn/bugreport/group.py, `crossbn bugs`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossbn.bugreport.group import group

from run_crossbn import crossbn

VARIANTS = str(Path(__file__).parent / "backends" / "numpy_variants.py")


def rec(
    case_id,
    backend="fw",
    verdict="deviation",
    stage="batch variance",
    formulation="variance=one-pass",
    shape=(8, 4),
    steps=("train0",),
    ratio=5.0,
    reason="",
    explains=True,
):
    return {
        "case_id": case_id,
        "pytest_id": f"g-{case_id}",
        "backend": backend,
        "device": "cpu",
        "verdict": verdict,
        "reason": reason,
        "case": {"shape": list(shape), "steps": list(steps), "dtype": "float32"},
        "localization": {"stage": stage} if verdict not in ("crash", "error") else None,
        "diagnosis": {"formulation": formulation, "explains": explains} if verdict not in ("crash", "error") else None,
        # a crash or error compared nothing
        "observables": {}
        if verdict in ("crash", "error")
        else {"train0.batch_var": {"ratio": ratio, "verdict": verdict}},
    }


def test_one_group_per_root_cause_with_its_smallest_case():
    records = [
        rec("a", shape=(64, 4), ratio=9.0),
        rec("b", shape=(8, 4), steps=("train0", "train1")),
        rec("c", shape=(8, 4)),
        rec("d", stage="dx", formulation="compute=float16"),
        rec("e", verdict="match"),
        rec("f", verdict="crash", reason="worker process died: EOFError\ntraceback"),
        rec("g", verdict="crash", reason="worker process died: EOFError\nanother traceback"),
        rec("h", backend="other"),
    ]
    groups = group(records)
    assert [(g.backend, g.kind, g.stage, g.count) for g in groups] == [
        ("fw", "finding", "batch variance", 3),
        ("fw", "crash", "", 2),
        ("fw", "finding", "dx", 1),
        ("other", "finding", "batch variance", 1),
    ]
    first = groups[0]
    assert first.smallest["case_id"] == "c"  # fewest elements, then fewest steps
    assert first.worst_ratio == 9.0 and first.dtypes == ["float32"]
    assert groups[1].fingerprint == "worker process died: EOFError" and groups[1].worst_ratio is None
    assert sum(g.count for g in groups) == 7  # the match is no finding


def test_one_root_cause_across_verdicts_and_arrangements():
    records = [
        rec("a", formulation="compute=float32"),
        rec("b", formulation="compute=float32,affine=folded"),
        rec("c", verdict="nan-mismatch", formulation="compute=float32,normalize=divide"),
        rec("d", formulation="compute=float16"),
    ]
    groups = group(records)
    assert [(g.fingerprint, g.count, g.verdicts) for g in groups] == [
        ("compute=float32", 3, ["deviation", "nan-mismatch"]),
        ("compute=float16", 1, ["deviation"]),
    ]


def test_an_explained_cause_is_one_group_wherever_it_first_shows():
    """Keras 3 on JAX computes float64 in float32: one case's numbers show it at
    the batch mean, another's only at the normalized values. One cause, one
    group. Where nothing explains the findings, or only the canonical
    formulas do, the stage still tells them apart."""
    records = [
        rec("a", stage="batch mean", formulation="compute=float32"),
        rec("b", stage="normalized", formulation="compute=float32,affine=folded"),
        rec("c", stage="batch mean", formulation="variance=one-pass", explains=False),
        rec("d", stage="dx", formulation="variance=one-pass", explains=False),
        rec("e", stage="running mean", formulation="hyperparameters=float32"),
        rec("f", stage="eval statistics", formulation="canonical"),
    ]
    groups = group(records)
    assert [(g.count, g.stage, g.fingerprint) for g in groups] == [
        (2, "batch mean, normalized", "compute=float32"),  # the largest first, then by the stage in its key
        (1, "batch mean", "variance=one-pass"),
        (1, "dx", "variance=one-pass"),
        (1, "eval statistics", "canonical"),
        (1, "running mean", "canonical"),
    ]


@pytest.mark.slow  # a real Keras-JAX run of smoke's five float64 cases: about 10 s
def test_bugs_and_the_report_group_keras_jax_float64_as_one_root_cause(tmp_path):
    pytest.importorskip("keras")
    pytest.importorskip("jax")
    out = tmp_path / "run"
    args = ("--suite", "smoke", "--backends", "keras-jax", "--no-conventions", "-n", "0", "--progress", "off")
    proc = crossbn("run", *args, "--out", out, "--", "-k", "f64")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    findings = [r for r in records if r["verdict"] == "deviation"]
    assert len(findings) == 5 and len({r["localization"]["stage"] for r in findings}) > 1  # shows at two stages
    listed = crossbn("bugs", out)
    assert "5 finding(s)" in listed.stdout and "1 root cause(s)" in listed.stdout, listed.stdout
    assert "5 x keras-jax/cpu deviation: batch mean, normalized | compute=float32" in listed.stdout
    # the HTML report's root-cause pages: the same one group
    assert len(list((out / "findings").glob("*.html"))) == 1
    assert "5 findings in 1 root-cause group" in (out / "index.html").read_text()


def test_bugs_command_on_a_real_run(tmp_path):
    env = {**os.environ, "CROSSBN_BACKEND_MODULE": VARIANTS}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossbn",
            "run",
            "--suite",
            "smoke",
            "--backends",
            "numpy-onepass,numpy-twopass",
            "-n",
            "0",
            "--no-conventions",
            "--progress",
            "off",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    findings = [r for r in records if r["verdict"] in ("deviation", "nan-mismatch", "error", "crash", "timeout")]
    assert findings and {r["backend"] for r in findings} == {"numpy-onepass"}
    proc = subprocess.run(
        [sys.executable, "-m", "crossbn", "bugs", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    groups = group(records)
    assert f"{len(findings)} finding(s)" in proc.stdout and f"{len(groups)} root cause(s)" in proc.stdout
    top = groups[0]
    assert (
        f"{top.count:5d} x numpy-onepass/cpu {'/'.join(top.verdicts)}: {top.stage} | {top.fingerprint}" in proc.stdout
    )
    assert f"smallest: {top.smallest['pytest_id']}" in proc.stdout
    assert (
        f"--backends numpy-onepass --devices cpu -n 0 --no-conventions -- -k {top.smallest['pytest_id']}" in proc.stdout
    )
    bad = subprocess.run(
        [sys.executable, "-m", "crossbn", "bugs", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "no results file" in bad.stderr
