"""Diagnosis per root cause (crossbn/verdict/root_causes.py), on planted faults in
real worker processes: a group's first finding is diagnosed in full, later
ones are confirmed against it with the same answer and say so; one its
formulation does not explain gets its own search; `audit` holds each
confirmation to the member's own search."""

from __future__ import annotations

import dataclasses

import pytest

from crossbn.oracle.formulation import Formulation
from crossbn.spec.case import Case
from crossbn.verdict.judge import judge
from crossbn.verdict.root_causes import Representative, RootCauses, audit

from localization_score import pool_and_backends


@pytest.fixture(scope="module")
def planted():
    pool, backends = pool_and_backends()
    yield pool, backends
    pool.close()


def _cases(n: int, **fields) -> list[Case]:
    base = dict(shape=(8, 4, 5, 5), train_steps=2, eval_step=True, suite="planted", group="g", offset_ratio=1000.0)
    return [Case(**{**base, **fields, "seed": seed}) for seed in range(n)]


def _judge(planted, cases, backend: str, causes):
    pool, backends = planted
    return [judge(c, backend, backends[backend], "cpu", pool, timeout=120, causes=causes) for c in cases]


def test_members_are_confirmed_against_the_first_finding(planted):
    causes = RootCauses("grouped")
    first, *members = _judge(planted, _cases(4), "planted-one-pass-hidden", causes)
    assert first["diagnosis"]["source"] == {"how": "own"}
    assert first["diagnosis"]["changes"] == {"variance": "one-pass"}
    assert first["localization"]["source"] == {"how": "own"}
    for rec in members:
        assert rec["verdict"] == first["verdict"] == "deviation"
        src = rec["diagnosis"]["source"]
        assert src == {
            "how": "confirmed",
            "representative": first["case_id"],
            "representative_test": first["pytest_id"],
        }
        assert rec["diagnosis"]["formulation"] == first["diagnosis"]["formulation"]
        assert rec["diagnosis"]["explains"] and rec["diagnosis"]["score"] <= 1.0
        assert rec["diagnosis"]["searched"] == 1
        assert rec["localization"]["stage"] == first["localization"]["stage"] == "batch variance"
        assert rec["localization"]["source"]["representative"] == first["case_id"]
        assert rec["localization"]["probes"] == []  # what confirmation saves: the probes' reruns


def test_each_mode_searches_every_finding_with_the_same_verdicts(planted):
    cases = _cases(3)
    grouped = _judge(planted, cases, "planted-one-pass-hidden", RootCauses("grouped"))
    each = _judge(planted, cases, "planted-one-pass-hidden", RootCauses("each"))
    assert [r["verdict"] for r in each] == [r["verdict"] for r in grouped]
    assert all(r["diagnosis"]["source"] == {"how": "own"} for r in each)
    assert [r["diagnosis"]["formulation"] for r in each] == [r["diagnosis"]["formulation"] for r in grouped]


def test_a_member_the_representative_does_not_explain_gets_its_own_search(planted):
    """A representative whose formulation is wrong for the member (Welford
    where the backend computes E[x²]-E[x]²) confirms nothing: the member is
    searched on its own, finds its own formulation, and joins the group."""
    from crossbn.verdict.root_causes import signature

    causes = RootCauses("grouped")
    case = _cases(1)[0]
    probe = _judge(planted, [case], "planted-one-pass-hidden", RootCauses("each"))[0]
    # the signature the member will have, from its own comparison
    pool, backends = planted
    keep = {}
    judge(case, "planted-one-pass-hidden", backends["planted-one-pass-hidden"], "cpu", pool, timeout=120, keep=keep)
    sig = signature(case, "planted-one-pass-hidden", "cpu", keep["judged"].comparison)
    wrong = Representative(
        "000000000000",
        "planted-wrong",
        dataclasses.replace(Formulation(), variance="welford"),
        {"stage": "dx", "how": "observed"},
        True,
        True,
        0.5,
    )
    causes.groups[sig] = [wrong]
    rec = _judge(planted, [case], "planted-one-pass-hidden", causes)[0]
    assert rec["diagnosis"]["source"] == {"how": "own"}
    assert rec["diagnosis"]["formulation"] == probe["diagnosis"]["formulation"]
    assert rec["localization"]["stage"] == "batch variance"
    assert [r.case_id for r in causes.groups[sig]] == ["000000000000", case.id]


def test_audit_records_the_own_search_of_each_confirmed_member(planted):
    recs = _judge(planted, _cases(3), "planted-one-pass-hidden", RootCauses("audit"))
    assert "audit" not in recs[0]["diagnosis"]  # a representative's search is its own
    for rec in recs[1:]:
        own = rec["diagnosis"]["audit"]
        assert own["formulation"] == rec["diagnosis"]["formulation"] and own["explains"]
        assert own["stage"] == rec["localization"]["stage"]
    summary = audit(recs)
    assert summary == {"findings": 3, "own": 1, "confirmed": 2, "equal": 2, "differences": []}


def test_audit_lists_a_difference_with_its_reason():
    """The reasons `audit` gives, on records made to differ (a confirmed
    member whose own search preferred another formulation, and a stage the
    representative lent)."""
    rec = {
        "backend": "b",
        "pytest_id": "t",
        "localization": {"stage": "normalized"},
        "diagnosis": {
            "formulation": "reduce=float16",
            "explains": True,
            "score": 0.5,
            "source": {"how": "confirmed", "representative": "r", "representative_test": "rt"},
            "audit": {"formulation": "compute=float16", "explains": True, "score": 0.4, "stage": "inverse std"},
        },
    }
    out = audit([rec])
    assert out["confirmed"] == 1 and out["equal"] == 0
    (d,) = out["differences"]
    assert d["representative"] == "rt" and d["own"] == "compute=float16"
    assert "both explain the outputs within rounding" in d["reason"]
    assert "stage normalized taken from the representative" in d["reason"] and "inverse std" in d["reason"]


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="grouped, each, audit"):
        RootCauses("sometimes")


_KINDS = {
    "both formulations explain it within rounding: the own search ranked the other first",
    "the representative's formulation explains it: the own greedy search did not reach it",
    "nothing explains it: the closest formulations differ",
    "stage lent by the representative: the own probes or fit say another",
}


@pytest.mark.slow
def test_audit_of_the_default_suite_on_two_backends(tmp_path):
    """The default suite's findings on torch and ONNX Runtime, grouped and
    each confirmed member also searched on its own: every confirmed finding
    carries its own search, every difference one of the known reasons, and
    a confirmed formulation that claims to explain its member does (score
    <= 1). The differences are printed (pytest -s, or on failure); the
    whole suite's are in benchmarks/README.md."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "audit"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossbn",
            "run",
            "--suite",
            "default",
            "--backends",
            "torch,onnxruntime-opset15",
            "-n",
            "2",
            "--diagnosis",
            "audit",
            "--no-cache",
            "--no-conventions",
            "--progress",
            "off",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    records = [json.loads(line) for line in (out / "results.jsonl").open()]
    summary = audit(records)
    print(
        f"audit: {summary['findings']} findings, {summary['own']} searched in full, {summary['confirmed']} "
        f"confirmed, {summary['equal']} of them equal to their own search"
    )
    for d in summary["differences"]:
        print(f"{d['backend']} {d['case']} (representative {d['representative']}): {d['reason']}")
    assert summary["confirmed"] > summary["own"] > 0
    assert summary["equal"] + len(summary["differences"]) == summary["confirmed"]
    assert all(d["kinds"] and set(d["kinds"]) <= _KINDS for d in summary["differences"])
    for rec in records:
        diag = rec.get("diagnosis")
        if diag and diag["source"]["how"] == "confirmed":
            assert "audit" in diag, rec["pytest_id"]
            if diag["explains"]:
                assert diag["score"] <= 1.0, rec["pytest_id"]
            assert rec["localization"]["source"] == diag["source"]
