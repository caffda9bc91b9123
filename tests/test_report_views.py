"""The report as a new user reads it, in headless Chromium (tests/chromium_page.py),
on the merged report of tests/test_report.py's real runs: the verdict matrix on
the first screen, every finding's point of the ratio chart a link that lands on
it, each fingerprint part in words, and the backend-against-backend matrix
linking to pages that exist."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from test_report import runs  # noqa: F401 - the fixture: two real runs and their merged report

from crossbn.oracle.formulation import Formulation
from crossbn.records.results import judged, read
from crossbn.report import fingerprints
from crossbn.spec.verdicts import FAILING

from chromium_page import open_page


def _target(page_path: Path, href: str) -> tuple[Path, str]:
    """The file and the anchor a relative link from `page_path` points at."""
    file, _, anchor = href.partition("#")
    return (page_path.parent / unquote(file)).resolve(), anchor


def test_the_verdict_matrix_is_on_a_1280x800_first_screen(runs, browser):  # noqa: F811
    page, problems = open_page(browser, runs["merged"] / "index.html")
    assert problems == []
    page.set_viewport_size({"width": 1280, "height": 800})
    page.evaluate("window.scrollTo(0, 0)")
    matrix = page.locator("table.matrix").bounding_box()
    assert matrix["y"] + matrix["height"] <= 800, matrix
    # the environment is there, collapsed: a click opens it
    versions = page.locator("#environment table.backends").first
    assert not versions.is_visible()
    page.locator("#environment summary").click()
    assert versions.is_visible()
    assert "run-a" in page.locator("#environment summary").inner_text()


def test_every_finding_point_of_the_ratio_chart_opens_it(runs, browser):  # noqa: F811
    index = runs["merged"] / "index.html"
    page, problems = open_page(browser, index)
    assert problems == []
    points = page.locator("svg.ratio-distribution a.point-link")
    records = read(runs["merged"] / "results.jsonl")
    compared_findings = [r for r in records if r["verdict"] in FAILING and judged(r)[0] is not None]
    assert compared_findings and points.count() == len(compared_findings)
    hrefs = [points.nth(i).get_attribute("href") for i in range(points.count())]
    for href in set(hrefs):
        file, anchor = _target(index, href)
        assert file.is_file(), href
        if anchor:
            assert f'id="{anchor}"' in file.read_text(encoding="utf-8"), href
    # each finding's tooltip names its case, and following its link lands on its page
    for rec in compared_findings:
        assert page.locator(f'svg.ratio-distribution a.point-link:has(title:text-is("{_tip(rec)}"))').count() == 1
    last = points.last  # painted last: on top of any dot it overlaps
    href = last.get_attribute("href")
    with page.expect_navigation():
        last.locator("circle").click()
    assert unquote(page.url).endswith("/merged/" + href)


def _tip(rec: dict) -> str:
    return f"{rec['pytest_id']}: {rec['verdict']}, error/bound {judged(rec)[0]:.3g}"


def test_fingerprint_parts_are_said_in_words(runs, browser):  # noqa: F811
    page, problems = open_page(browser, runs["merged"] / "index.html")
    assert problems == []
    parts = page.locator("#findings-table code.fp-part")
    assert parts.count() >= 1
    for i in range(parts.count()):
        part = parts.nth(i).inner_text()
        assert parts.nth(i).get_attribute("title") == fingerprints.words(part) != ""
    legend = page.locator(".fingerprint-legend").inner_text()
    assert "variance=one-pass" in legend and "E[x²] − E[x]²" in legend
    # and on the finding's page, each part with its words beside it
    href = page.locator("#findings-table a", has_text="smoke").first.get_attribute("href")
    finding, problems = open_page(browser, runs["merged"] / href)
    assert problems == []
    words = finding.locator("table.summary ul.fp-words").inner_text()
    # (clamped or not: the unclamped one-pass is what a separating case settles on this backend)
    assert re.search(r"variance=one-pass(-unclamped)?: variance in one pass", words), words


def _said_in_own_words(part: str) -> bool:
    """The table has words for this very key and value (not the fallback "<aspect>: <value>")."""
    key, _, _ = part.partition("=")
    said = fingerprints.words(part)
    return key in fingerprints.WORDS and bool(said) and not said.startswith(f"{fingerprints.WORDS[key][0]}:")


def test_the_words_table_covers_every_aspect_a_fingerprint_can_name(runs):  # noqa: F811
    """A fingerprint's keys are Formulation's fields (Formulation.label): each
    has its words, and so does each value the search tries for it; and every
    formulation the real runs' diagnoses tried is said in words."""
    import dataclasses

    keys = {f.name for f in dataclasses.fields(Formulation)}
    assert set(fingerprints.WORDS) == keys
    tried = [
        Formulation(compute="float16", reduce="float32"),
        Formulation(variance="one-pass", normalize="divide", eps_in_root=False, norm_var="unbiased"),
        Formulation(variance="welford", affine="folded", running_var="unbiased", momentum="new"),
        Formulation(eps_floor=1.001e-05, hyperparameters="float32", empty_batch="skip", frozen="inference"),
        Formulation(input="float16", order="sequential", variance="one-pass-unclamped"),
    ]
    parts = {p for f in tried for p in f.label().split(",")}
    assert {p.partition("=")[0] for p in parts} == keys
    evidence = [
        e["formulation"]
        for r in read(runs["merged"] / "results.jsonl")
        for e in (r.get("diagnosis") or {}).get("evidence") or []
    ]
    assert evidence
    parts |= {p for label in evidence if label != "canonical" for p in label.split(",")}
    assert [p for p in sorted(parts) if not _said_in_own_words(p)] == []
    assert fingerprints.words("canonical") == "the canonical formulas"


def test_backend_against_backend_matrix_links_to_pages_that_exist(runs, browser):  # noqa: F811
    index = runs["merged"] / "index.html"
    page, problems = open_page(browser, index)
    assert problems == []
    backends = sorted({r["backend"] for r in read(runs["merged"] / "results.jsonl")})
    assert page.locator("table.pair-matrix tbody tr").count() == len(backends)
    links = page.locator("table.pair-matrix a")
    assert links.count() == len(backends) * (len(backends) - 1)  # both halves, symmetric
    for i in range(links.count()):
        file, _ = _target(index, links.nth(i).get_attribute("href"))
        assert file.is_file()
    href = page.locator("table.pair-matrix a").first.get_attribute("href")
    pair, problems = open_page(browser, _target(index, href)[0])
    assert problems == []
    for i in range(pair.locator("table.pairs a").count()):
        file, anchor = _target(_target(index, href)[0], pair.locator("table.pairs a").nth(i).get_attribute("href"))
        assert file.is_file() and (not anchor or f'id="{anchor}"' in file.read_text(encoding="utf-8"))
