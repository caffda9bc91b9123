"""Eval-mode departures are localized by testing, not by where they show:
planted faults first visible in the eval step, each through a real worker
process, in the records, on the finding pages and in ISSUE.md's words.
Before the eval branch had its probes, every one of these was put down to
"eval statistics" by the per-channel fit."""

from __future__ import annotations

import json

import pytest
from test_report_pages import PageText

from crossbn.bugreport.issue import how_words
from crossbn.report import build, pages

from localization_score import judge_plant, pool_and_backends

PLANTS = ("invstd-eval-only", "running-mean-hidden", "eval-batch-stats", "affine-eval")


@pytest.fixture(scope="module")
def records():
    pool, backends = pool_and_backends()
    try:
        yield {p: judge_plant(p, pool, backends) for p in PLANTS}
    finally:
        pool.close()


def ran(rec: dict) -> dict[str, str]:
    return {p["name"]: p["verdict"] for p in rec["localization"]["probes"] if p["ran"]}


def test_a_wrong_inverse_std_in_eval_is_told_from_wrong_statistics(records):
    """An eval-only case whose inverse std is 1% off: the batch's own exact
    statistics given as the running ones leave it off, so the statistics are
    right and their use is not."""
    loc = records["invstd-eval-only"]["localization"]
    assert (loc["stage"], loc["how"], loc["observable"]) == ("inverse std", "probe", "eval.y")
    assert ran(records["invstd-eval-only"])["eval-given-batch-stats"] == "deviation"
    assert loc["batch_statistics_ratio"] > 1
    assert "still off by a per-channel scale" in how_words(loc)


def test_hidden_running_statistics_are_found_by_giving_the_exact_ones(records):
    """Running statistics the backend does not return, wrong after training:
    given the exact ones, its eval step is right."""
    rec = records["running-mean-hidden"]
    loc = rec["localization"]
    assert not any(k.endswith(".running_mean") for k in rec["observables"])
    assert (loc["stage"], loc["how"]) == ("running mean", "probe")
    assert ran(rec)["eval-given-stats"] == "match"
    assert "the running mean the framework kept from training was wrong" in how_words(loc)


def test_eval_with_the_batch_statistics_is_shown_to_be_that(records):
    loc = records["eval-batch-stats"]["localization"]
    assert loc["stage"] == "eval statistics"
    assert loc["batch_statistics_ratio"] <= 1
    assert "what the batch's own statistics give" in how_words(loc)


def test_an_eval_affine_fault_is_the_affine_output(records):
    rec = records["affine-eval"]
    assert rec["localization"]["stage"] == "affine output"
    assert ran(rec)["affine-off"] == "match"


def test_the_finding_page_lists_the_eval_probes(records, tmp_path):
    rec = records["invstd-eval-only"]
    (tmp_path / "results.jsonl").write_text(json.dumps(rec) + "\n")
    build([tmp_path], tmp_path)
    html = (tmp_path / pages.page_href(rec)).read_text(encoding="utf-8")
    text = " ".join("".join(PageText(html).parts).split())
    assert "eval-given-batch-stats" in text
    assert "the batch's own exact statistics given as the running ones" in text
