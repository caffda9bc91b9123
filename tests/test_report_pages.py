"""The report built from records made here, without a browser: every verdict,
records of an older schema without the newer fields, a partial run.json,
model results that crashed, non-finite ratios, and sources that overlap."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pytest

from crossbn.records.results import make_record
from crossbn.report import ReportError, build, finding_page, pages
from crossbn.spec.case import Case
from crossbn.spec.network_case import ModelCase
from crossbn.verdict.compare import compare
from crossbn.verdict.network_judge import model_record


def _deviation(case: Case, backend: str = "mine") -> dict:
    """A real comparison: y off by 1e-3 in channel 2, everything else exact."""
    exp = {"train0.y": np.linspace(-2, 2, 24).reshape(8, 3), "train0.batch_mean": np.zeros(3)}
    act = {"train0.y": exp["train0.y"].copy(), "train0.batch_mean": np.zeros(3, np.float32)}
    act["train0.y"][5, 2] += 1e-3
    act["train0.y"] = act["train0.y"].astype(np.float32)
    bounds = {k: np.full(np.shape(v), 1e-6) for k, v in exp.items()}
    c = compare(act, exp, bounds, channel_axis=1)
    loc = {"stage": "affine output", "step": "train0", "observable": "train0.y", "how": "fit", "probes": []}
    return make_record(
        case=case, backend=backend, device="cpu", verdict=c.verdict, comparison=c, localization=loc, version="1.0"
    )


def _write(folder, records, run=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if run is not None:
        (folder / "run.json").write_text(json.dumps(run))
    return folder


class PageText(HTMLParser):
    """A page's text, its markup left out."""

    def __init__(self, html):
        super().__init__()
        self.parts = []
        self.feed(html)

    def handle_data(self, data):
        self.parts.append(data)


def test_every_verdict_and_an_older_record_render(tmp_path):
    case = Case(shape=(8, 3))
    dev = _deviation(case)
    old = _deviation(Case(shape=(8, 3), seed=1), backend="old")
    for o in old["observables"].values():  # schema-1 records written before the report existed
        del o["worst_elements"], o["per_channel"]
    del old["inputs"]
    old["observables"]["train0.y"]["ratio"] = "inf"
    others = [
        make_record(case=Case(shape=(8, 3), seed=s), backend="mine", device="cpu", verdict=v, reason=f"{v} here")
        for s, v in ((2, "error"), (3, "crash"), (4, "timeout"), (5, "unsupported"))
    ]
    src = _write(tmp_path / "run", [dev, old, *others], run={"schema": 1, "suite": "x"})  # a partial run.json
    index = build([src], tmp_path / "out")
    html = index.read_text()
    assert "<td>x</td>" in html  # the suite it has; the fields it lacks render empty
    pages_written = sorted(p.name for p in (tmp_path / "out" / "findings").glob("*.html"))
    assert len(pages_written) == 5  # deviation, old deviation, error, crash, timeout; not unsupported
    # ranking: no ratio (error, crash, timeout) first, then inf, then the finite ratio
    order = [line["verdict"] + ":" + line["backend"] for line in pages.findings([dev, old, *others])]
    assert order[3:] == ["deviation:old", "deviation:mine"] and set(order[:3]) == {
        "error:mine",
        "crash:mine",
        "timeout:mine",
    }
    assert 'data-sort="1e308"' in html
    page = (tmp_path / "out" / pages.page_href(dev)).read_text()
    assert 'class="chart channel-errors"' in page and 'class="chart dataflow"' in page
    assert "[5, 2]" in page  # the worst element, located
    crash = (tmp_path / "out" / pages.page_href(others[1])).read_text()
    assert "crash here" in crash and 'class="chart dataflow"' not in crash  # nothing computed: no diagram


def test_channel_chart_shows_the_failing_observables_worst_first():
    rec = _deviation(Case(shape=(8, 3)))
    series = finding_page.channel_series(rec)
    assert [name for name, _ in series] == ["train0.y"]
    per = series[0][1]
    assert per[2] > 1 and max(per[0], per[1]) < 1  # only channel 2 is off (the rest: float32 rounding)


def test_a_crashed_model_result_gets_a_network_page(tmp_path):
    rec = model_record(case=ModelCase(), backend="mine", device="cpu", verdict="crash", reason="segfault")
    assert pages.is_network(rec)
    build([_write(tmp_path / "m", [rec])], tmp_path / "out")
    page = (tmp_path / "out" / pages.page_href(rec)).read_text()
    assert "Localization map" in page and "segfault" in page


def test_overlapping_sources_are_said_not_silently_dropped(tmp_path):
    dev = _deviation(Case(shape=(8, 3)))
    a = _write(tmp_path / "box-a", [dev])
    b = _write(tmp_path / "box-b", [dict(dev, version="2.0")])
    index = build([a, b], tmp_path / "both").read_text()
    text = " ".join(PageText(index).parts)
    assert "1 result of box-a had the same case, backend and device as box-b" in text
    with pytest.raises(ReportError, match="one of the sources' folders"):
        build([a, b], a)


def test_long_names_give_distinct_page_names():
    one = {"pytest_id": "x" * 300, "case_id": "c", "backend": "b", "device": "cpu"}
    two = dict(one, device="cuda")
    assert pages.slug(one) != pages.slug(two) and len(pages.slug(one)) <= 180


def test_a_page_per_root_cause_with_its_members(tmp_path):
    """Three findings of one root cause (backend, verdict, dtype, stage,
    fingerprint) and one of another: two pages, the first with a member
    table naming all three and how each was diagnosed; a member with a
    comparison against another device gets a page of its own too; the index
    has a row per root cause with its size."""
    recs = [_deviation(Case(shape=(8, 3), seed=s)) for s in range(3)]
    recs[0]["observables"]["train0.y"]["ratio"] *= 10  # the worst: the group's page is named after it
    recs[0]["worst"]["ratio"] *= 10
    rep = {"how": "own"}
    conf = {"how": "confirmed", "representative": recs[0]["case_id"], "representative_test": recs[0]["pytest_id"]}
    for rec, source in zip(recs, (rep, conf, conf)):
        rec["diagnosis"] = {
            "formulation": "variance=one-pass",
            "explains": True,
            "score": 0.5,
            "source": source,
            "evidence": [],
            "margin": 10.0,
        }
    recs[2]["cross_device"] = {"against": "cpu", "verdict": "match"}
    other = _deviation(Case(shape=(8, 3), seed=9), backend="theirs")
    src = _write(tmp_path / "run", [*recs, other])
    index = build([src], tmp_path / "out")
    written = sorted(p.name for p in (tmp_path / "out" / "findings").glob("*.html"))
    assert written == sorted(f"{pages.slug(r)}.html" for r in (recs[0], recs[2], other))
    group = (tmp_path / "out" / pages.page_href(recs[0])).read_text()
    text = "".join(PageText(group).parts)
    assert "This root cause: 3 findings" in text
    for rec in recs:
        assert rec["pytest_id"] in text and f'id="member-{pages.slug(rec)}"' in group
    assert text.count(f"confirmed against {recs[0]['pytest_id']}") == 2 and "its own search" in text
    assert f'href="{pages.slug(recs[2])}.html"' in group and f'href="{pages.slug(recs[1])}.html"' not in group
    lonely = (tmp_path / "out" / pages.page_href(other)).read_text()
    assert "This root cause" not in lonely  # a group of one is a plain finding page
    rows = [line for line in pages.group_lines([*recs, other])]
    assert [(r["backend"], r["members"]) for r in rows] == [("mine", 3), ("theirs", 1)]
    assert "4 findings in 2 root-cause groups" in "".join(PageText(index.read_text()).parts)
