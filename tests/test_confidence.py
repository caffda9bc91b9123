"""A fingerprint's confidence (crossbn/verdict/confidence.py), on faults planted
through the custom-backend API (tests/backends/planted.py) and judged the way
a run judges them, in real worker processes: a plain bug is unexplained; a
formulation that ties with rivals on its case is told apart by a separating
case run on the same backend; what the record says reaches the finding page
and ISSUE.md, and a root cause's confirmed members carry it."""

from __future__ import annotations

import dataclasses
import json

import pytest
from test_report_pages import PageText

from crossbn.bugreport.observed import statement
from crossbn.report import build, pages
from crossbn.spec.case import Case
from crossbn.verdict.confidence import PROBE_ELEMENTS, confidence, formulation_of
from crossbn.verdict.fingerprint import base_formulation
from crossbn.verdict.judge import judge
from crossbn.verdict.root_causes import RootCauses

from localization_score import judge_plant, plant_case, pool_and_backends


@pytest.fixture(scope="module")
def judged():
    pool, backends = pool_and_backends()
    try:
        records = {p: judge_plant(p, pool, backends) for p in ("eval-batch-stats", "clamped-eps", "half-reductions")}
        # a second case of clamped-eps's root cause (another seed): confirmed against the first
        causes = RootCauses()
        first = judge(
            plant_case("clamped-eps"),
            "planted-clamped-eps",
            backends["planted-clamped-eps"],
            "cpu",
            pool,
            timeout=120,
            causes=causes,
        )
        member = dataclasses.replace(plant_case("clamped-eps"), seed=4)
        second = judge(
            member, "planted-clamped-eps", backends["planted-clamped-eps"], "cpu", pool, timeout=120, causes=causes
        )
        records["grouped"] = [first, second]
        yield records
    finally:
        pool.close()


def test_a_plain_bug_is_unexplained(judged):
    """Eval normalizing with the batch statistics: no formulation computes that."""
    conf = judged["eval-batch-stats"]["diagnosis"]["confidence"]
    assert conf["level"] == "unexplained"
    assert conf["separating"] is None
    assert conf["words"].startswith("no formulation tried reproduces the outputs")


def test_a_tie_is_separated_by_a_case_run_on_the_backend(judged):
    """eps clamped to 1e-5 ties with the same clamp on a one-pass variance on
    its near-eps case; a large offset sets them apart, and the planted backend
    (two-pass) is explained by the first only."""
    diag = judged["clamped-eps"]["diagnosis"]
    conf = diag["confidence"]
    assert conf["level"] == "discriminating" and conf["candidates"] == ["eps_floor=1e-05"]
    assert conf["resolved_from"] == "eps_floor=1e-05"
    sep = conf["separating"]
    assert sep["ran"] and "offset_ratio" in sep["case"]
    assert "variance=one-pass,eps_floor=1e-05" in sep["scores"] and sep["kept"] == ["eps_floor=1e-05"]
    assert sep["scores"]["eps_floor=1e-05"]["score"] <= 1.0
    assert diag["formulation"] == "eps_floor=1e-05"


def test_the_separating_case_corrects_a_float16_misdiagnosis(judged):
    """Sums accumulated in float16 look like float16 arithmetic on float32
    sums on the plant's own case; longer sums near eps tell them apart."""
    diag = judged["half-reductions"]["diagnosis"]
    conf = diag["confidence"]
    assert conf["level"] == "discriminating"
    assert conf["resolved_from"] == "compute=float16,reduce=float32"
    assert diag["changes"] == {"reduce": "float16"} and diag["explains"]
    assert conf["separating"]["ran"] and conf["separating"]["kept"] == ["reduce=float16"]


def test_a_tie_too_large_to_probe_stays_ambiguous_and_says_why():
    case = Case(shape=(64, 4, 32, 32), seed=1)
    assert 64 * 4 * 32 * 32 > PROBE_ELEMENTS
    rows = [
        {"formulation": "reduce=float16", "score": 0.03, "ulps": 0.42},
        {"formulation": "compute=float16", "score": 0.04, "ulps": 0.40},
    ]
    diag = {"formulation": "reduce=float16", "explains": True, "score": 0.03, "evidence": rows}

    def never(*_):
        raise AssertionError("no separating case runs for a case this large")

    conf = confidence(case, ["train0.y"], diag, never)
    assert conf["level"] == "ambiguous" and conf["candidates"] == ["reduce=float16", "compute=float16"]
    assert conf["separating"] is None
    assert f"more than {PROBE_ELEMENTS:,}" in conf["words"]


def test_confirmed_members_carry_their_representatives_confidence(judged):
    first, second = judged["grouped"]
    assert second["diagnosis"]["source"]["how"] == "confirmed"
    assert second["diagnosis"]["confidence"] == first["diagnosis"]["confidence"]
    assert second["diagnosis"]["formulation"] == "eps_floor=1e-05"


def test_the_finding_page_says_the_confidence(judged, tmp_path):
    recs = [judged["eval-batch-stats"], judged["clamped-eps"]]
    ambiguous = json.loads(json.dumps(judged["half-reductions"]))
    ambiguous["case_id"] += "x"  # its own page: the same finding, as a record made before any probe ran
    ambiguous["diagnosis"]["confidence"] = {
        "level": "ambiguous",
        "candidates": ["reduce=float16", "compute=float16"],
        "separating": {"case": "offset_ratio=30.0", "ran": False, "result": "unsupported: no such thing"},
        "words": "",
    }
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*recs, ambiguous]))
    build([tmp_path], tmp_path)

    def text(rec):
        html = (tmp_path / pages.page_href(rec)).read_text(encoding="utf-8")
        return " ".join("".join(PageText(html).parts).split())

    assert "Diagnosis: unexplained: no formulation reproduces the outputs within rounding" in text(recs[0])
    said = text(recs[1])
    assert "Diagnosis: discriminating: eps_floor=1e-05 explains the outputs" in said
    assert "only it explains a separating case (offset_ratio=16384.0, distribution=normal) run on the backend" in said
    assert (
        "Diagnosis: ambiguous between reduce=float16 and compute=float16 (a case with offset_ratio=30.0 would "
        "separate them: not run, unsupported: no such thing)" in text(ambiguous)
    )


def test_issue_md_names_a_cause_only_when_the_diagnosis_discriminates(judged):
    rec = judged["clamped-eps"]
    case = Case.from_dict(rec["case"])
    base = base_formulation(case)
    stated = statement(rec["diagnosis"], case, base, {}, "planted-clamped-eps on cpu")
    assert stated.cause == "eps clamped to at least 1e-05"
    assert "only `eps_floor=1e-05` explains a separating case" in stated.note
    ambiguous = {
        **rec["diagnosis"],
        "confidence": {
            "level": "ambiguous",
            "candidates": ["eps_floor=1e-05", "variance=one-pass,eps_floor=1e-05"],
            "separating": None,
            "words": "x; no separating case was run: 9 candidates (more than 8)",
        },
    }
    stated = statement(ambiguous, case, base, {}, "planted-clamped-eps on cpu")
    other = formulation_of("variance=one-pass,eps_floor=1e-05").describe(case, base).replace(", ", " and ")
    assert stated.cause == f"consistent with eps clamped to at least 1e-05 or {other}: this case cannot tell which"
    assert stated.note == "No separating case was run: 9 candidates (more than 8)."
    plain = judged["eval-batch-stats"]
    stated = statement(plain["diagnosis"], Case.from_dict(plain["case"]), base, {}, "planted on cpu")
    assert stated.cause == "" and not stated.explains
