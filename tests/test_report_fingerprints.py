"""Ambiguous fingerprints (crossbn/report/fingerprints.py): two formulations
the search's own rule cannot tell apart (fingerprint.py keeps a change only
when it at least halves the score or, within rounding, the ulp distance) are
said to explain the outputs about equally well: on the numbers of a user's
report, and on the real diagnoses of tests/test_report.py's runs."""

from __future__ import annotations

import json

from test_report import runs  # noqa: F401 - the fixture: two real runs and their merged report
from test_report_pages import PageText

from crossbn.bugreport.group import root_cause
from crossbn.records.results import read
from crossbn.report import build, fingerprints, pages
from crossbn.verdict.fingerprint import IMPROVEMENT


def _row(formulation, score, ulps):
    return {"formulation": formulation, "score": score, "ulps": ulps}


def test_the_users_close_call_is_ambiguous_and_a_clear_one_is_not():
    """PyTorch float16 on a smoke case: the diagnosed formulation scored
    0.0332 against 0.0345 for one more change, both within rounding, 0.42
    against 0.40 ulps: nothing tells them apart."""
    best = "reduce=float16,running_var=unbiased"
    close = "reduce=float16,variance=one-pass,running_var=unbiased"
    evidence = [
        _row(close, 0.0345, 0.40),
        _row(best, 0.0332, 0.42),
        _row("reduce=float16,affine=folded,running_var=unbiased", 0.05, 0.42 * IMPROVEMENT * 1.01),  # 2x: apart
        _row("running_var=unbiased", 3.4, 0.43),  # does not explain it
    ]
    diag = {"formulation": best, "explains": True, "score": 0.0332, "ulps": 0.42, "evidence": evidence}
    assert fingerprints.rivals(diag) == [close]
    said = fingerprints.settled(best, [close])
    assert [p["part"] for p in said["settled"]] == ["reduce=float16", "running_var=unbiased"]
    assert [p["part"] for p in said["unsettled"]] == ["variance=one-pass"]
    # where nothing explains it, the scores decide
    far = {"formulation": "a=1", "explains": False, "evidence": [_row("a=1", 40.0, 9.0), _row("b=2", 70.0, 1.0)]}
    assert fingerprints.rivals(far) == ["b=2"]
    far["evidence"][1]["score"] = 40.0 * IMPROVEMENT
    assert fingerprints.rivals(far) == []


def test_a_real_diagnosis_page_says_which_formulations_it_cannot_tell_apart(runs):  # noqa: F811
    """numpy-onepass (E[x²]−E[x]², not clamped): on the smoke cases the
    one-pass variance ties with other changes by the evidence's rule; the
    record's confidence holds those ties, and a separating case run on the
    backend (a large offset) narrows them to what it explains; the page says
    whichever the record holds."""
    records = read(runs["merged"] / "results.jsonl")
    rivals = pages.rivals_by_result(records)
    onepass = [r for r in records if r["backend"] == "numpy-onepass" and r.get("diagnosis")]
    assert onepass
    for rec in onepass:
        own = rec if rec["diagnosis"]["source"]["how"] == "own" else None
        if own is None:  # a confirmed diagnosis takes its representative's search
            rep = rec["diagnosis"]["source"]["representative"]
            own = next(r for r in onepass if r["case_id"] == rep)
        diag = own["diagnosis"]
        conf = diag["confidence"]
        assert rivals[pages.result_key(rec)] == conf["candidates"][1:]
        sep = conf.get("separating") or {}
        first = conf.get("resolved_from") or diag["formulation"]
        before = set(sep["scores"]) if sep.get("ran") else set(conf["candidates"])
        assert len(before) > 1, "the one-pass variance's rounding leaves other changes undecided"
        best = next(e for e in diag["evidence"] if e["formulation"] == first)
        for e in diag["evidence"]:
            if e is best:
                continue
            apart = e["score"] > 1 or max(e["ulps"], best["ulps"]) >= IMPROVEMENT * min(e["ulps"], best["ulps"])
            same_cause = root_cause(e["formulation"]) == root_cause(best["formulation"])  # arranged otherwise
            assert (e["formulation"] in before) == (not apart and not same_cause), e
    group = next(g for g in pages.root_cause_groups(records) if g[0]["backend"] == "numpy-onepass")
    html = (runs["merged"] / pages.page_href(group[0])).read_text(encoding="utf-8")
    text = " ".join("".join(PageText(html).parts).split())
    diag = group[0]["diagnosis"]
    names = [diag["formulation"], *rivals[pages.result_key(group[0])]]
    if diag["confidence"]["level"] == "ambiguous":
        listed = ", ".join(names[:-1]) + " and " + names[-1]
        assert f"Ambiguous: {listed} explain the outputs about equally well." in text
        assert "What all of them share is what the outputs establish: variance=one-pass" in text
    else:
        assert names == ["variance=one-pass-unclamped"], names
        assert "Diagnosis: discriminating: variance=one-pass-unclamped explains the outputs" in text
        assert "only it explains a separating case (offset_ratio=16384.0) run on the backend" in text
        assert 'id="ambiguous"' not in html
    index = (runs["merged"] / "index.html").read_text(encoding="utf-8")
    assert index.count('class="tag ambiguous"') == sum(1 for line in pages.group_lines(records) if line["rivals"])


def test_a_diagnosis_without_rivals_is_not_called_ambiguous(runs, tmp_path):  # noqa: F811
    rec = next(
        r
        for r in read(runs["merged"] / "results.jsonl")
        if r.get("diagnosis") and r["diagnosis"]["source"]["how"] == "own"
    )
    diag = rec["diagnosis"]
    diag["evidence"] = [e for e in diag["evidence"] if e["formulation"] == diag["formulation"] or e["score"] > 1]
    diag.pop("confidence", None)  # a record from before confidences: the evidence's own ties decide
    (tmp_path / "results.jsonl").write_text(json.dumps(rec) + "\n")
    build([tmp_path], tmp_path)
    html = (tmp_path / pages.page_href(rec)).read_text(encoding="utf-8")
    assert 'id="ambiguous"' not in html and "Ambiguous" not in html
    assert 'class="tag ambiguous"' not in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_a_rival_that_only_arranges_the_formulas_otherwise_is_not_ambiguity():
    """`compute=float32` against `compute=float32,affine=folded`: one cause (the
    float32 computation), whichever way the affine is arranged within it."""
    diag = {
        "formulation": "compute=float32",
        "evidence": [_row("compute=float32", 0.4, 100.0), _row("compute=float32,affine=folded", 0.4, 101.0)],
    }
    assert fingerprints.rivals(diag) == []
    diag["evidence"].append(_row("compute=float32,reduce=float16", 0.4, 102.0))
    assert fingerprints.rivals(diag) == ["compute=float32,reduce=float16"]
