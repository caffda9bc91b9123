"""The HTML report, end to end: real runs (planted NumPy backends in real
worker processes, and PyTorch with a planted eps for a network page), the
real `crossbn report` merging two of them, and the pages loaded in headless
Chromium (Debian's package, installed by tools/install-chromium, the README's
test setup) through Playwright: no console errors, the matrix, the charts and
the highlighted stage present, screenshots in the test's temporary folder,
and markup in a backend's strings shown as text."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from crossbn.records.results import read

HERE = Path(__file__).parent
VARIANTS = str(HERE / "backends" / "numpy_variants.py")
HOSTILE = str(HERE / "backends" / "hostile.py")
MODEL_FAULTS = str(HERE / "backends" / "model_faults.py")
MARKUP = "<script>alert('x')</script> & <img src=x onerror=alert(1)> &amp; \"' onmouseover=\"alert(2)"


def crossbn(*args, env=None, timeout=600):
    proc = subprocess.run(
        [sys.executable, "-m", "crossbn", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def runs(built_once):
    """Two separate runs (the second with a hostile backend) and their merged
    report, made once for the session's workers."""
    root = built_once("report-runs", _two_runs_and_their_report)
    return {"a": root / "run-a", "b": root / "run-b", "merged": root / "merged"}


def _two_runs_and_their_report(root):
    a, b, merged = root / "run-a", root / "run-b", root / "merged"
    crossbn(
        "run",
        "--suite",
        "smoke",
        "--backends",
        "numpy-twopass,numpy-onepass",
        "-n",
        "2",
        "--out",
        str(a),
        "--progress",
        "plain",
        env={"CROSSBN_BACKEND_MODULE": VARIANTS},
    )
    suite = root / "hostile.toml"
    suite.write_text(
        "[[group]]\nname = 'offset'\nshape = [16, 3, 5]\noffset_ratio = 1000.0\n[group.axes]\nseed = [1, 15]\n"
    )
    crossbn(
        "run",
        "--suite",
        str(suite),
        "--backends",
        "numpy-hostile",
        "-n",
        "0",
        "--no-conventions",
        "--out",
        str(b),
        "--progress",
        "off",
        env={"CROSSBN_BACKEND_MODULE": HOSTILE},
    )
    proc = crossbn("report", str(a / "results.jsonl"), str(b), "--out", str(merged))
    assert str(merged / "index.html") in proc.stdout


class _Page(HTMLParser):
    """Tags with their attributes, and the text, of one page."""

    def __init__(self, path: Path):
        super().__init__()
        self.tags, self.text = [], []
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def having(self, tag, cls=None):
        return [a for t, a in self.tags if t == tag and (cls is None or cls in (a.get("class") or "").split())]


def test_run_ends_with_a_report_and_its_environment(runs):
    a = runs["a"]
    assert (a / "index.html").is_file()
    info = json.loads((a / "run.json").read_text())
    assert info["complete"] is True and info["suite"] == "smoke" and info["wall_seconds"] > 0
    assert info["backends"] == ["numpy-twopass", "numpy-onepass"] and info["crossbn"]
    records = read(a / "results.jsonl")
    findings = [r for r in records if r["verdict"] in ("deviation", "nan-mismatch", "error", "crash", "timeout")]
    assert findings, "the one-pass variance deviates on the smoke suite's offset cases"
    pages = sorted(p.name for p in (a / "findings").glob("*.html"))
    groups = {
        (f["backend"], f["verdict"], f["case"]["dtype"], f["localization"]["stage"], f["diagnosis"]["formulation"])
        for f in findings
    }
    assert len(pages) == len(groups) < len(findings)  # a page per root cause
    page = _Page(a / "index.html")
    text = "".join(page.text)
    # every root cause is listed, linked to its page, with its stage and fingerprint
    links = {x["href"].split("#")[0] for x in page.having("a") if x.get("href", "").startswith("findings/")}
    assert links == {f"findings/{p}" for p in pages}
    for f in findings:
        assert f["localization"]["stage"] in text and f["diagnosis"]["formulation"] in text
    # and every finding is a row of its group's page
    members = "".join("".join(_Page(a / "findings" / p).text) for p in pages)
    for f in findings:
        assert f["pytest_id"] in members
    # the conventions crossbn run observed first are in the index
    assert (a / "conventions.jsonl").is_file() and page.having("table", "conventions")


def test_merged_report_holds_both_runs(runs):
    merged = read(runs["merged"] / "results.jsonl")
    assert len(merged) == len(read(runs["a"] / "results.jsonl")) + len(read(runs["b"] / "results.jsonl"))
    page = _Page(runs["merged"] / "index.html")
    text = "".join(page.text)
    for name in ("numpy-twopass/cpu", "numpy-onepass/cpu", "numpy-hostile/cpu", "run-a", "run-b"):
        assert name in text
    assert len(page.having("svg", "ratio-distribution")) == 1
    assert page.having("line", "bound-line")


def test_markup_in_backend_strings_is_escaped(runs):
    index = (runs["merged"] / "index.html").read_text(encoding="utf-8")
    assert "<script>alert" not in index and "<img src=x" not in index
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;img" in index
    error = [r for r in read(runs["b"] / "results.jsonl") if r["case"]["seed"] == 15]
    assert error and error[0]["verdict"] == "error" and MARKUP in error[0]["reason"]
    page = runs["merged"] / "findings" / f"{error[0]['pytest_id']}--numpy-hostile--cpu.html"
    html = page.read_text(encoding="utf-8")
    assert "<script>alert" not in html and "<img src=x" not in html
    assert MARKUP in "".join(_Page(page).text)  # shown as the text it is


def test_report_folder_is_self_contained_and_movable(runs, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(runs["merged"], moved)
    for path in [moved / "index.html", *(moved / "findings").glob("*.html")]:
        html = path.read_text(encoding="utf-8")
        assert str(runs["merged"].parent) not in html, f"{path.name} names an absolute path"
        page = _Page(path)
        for tag, attrs in page.tags:
            for attr in ("href", "src"):
                ref = attrs.get(attr)
                if ref is None or ref.startswith("#"):
                    continue
                assert "://" not in ref and not ref.startswith("/"), f"{path.name}: {tag} {attr}={ref}"
                assert (path.parent / ref.split("#")[0]).exists(), f"{path.name}: broken link {ref}"
        assert not page.having("link") and not [a for t, a in page.tags if t == "script" and a.get("src")]


def test_report_command_errors_name_the_source(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "crossbn", "report", str(tmp_path / "nowhere")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "nowhere: no results file" in proc.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.jsonl").write_text('{"not": "a record"}\n')
    proc = subprocess.run([sys.executable, "-m", "crossbn", "report", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "record 1 is not a crossbn result" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "crossbn", "report", str(bad), str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "--out is needed" in proc.stderr


# ---- in a real browser -------------------------------------------------------------------

from chromium_page import open_page  # noqa: E402 - beside the tests that use it


def test_index_in_chromium(runs, browser, tmp_path):
    page, problems = open_page(browser, runs["merged"] / "index.html")
    assert problems == []
    assert page.locator("table.matrix tbody tr").count() == 3  # three backends
    assert page.locator("table.matrix td.w-deviation").count() >= 1
    chart = page.locator("svg.ratio-distribution")
    assert chart.count() == 1 and chart.bounding_box()["height"] > 50
    assert page.locator("svg.ratio-distribution .bound-line").count() == 1
    assert page.locator("table.conventions").count() == 1
    rows = page.locator("#findings-table tbody tr")
    n = rows.count()
    assert n > 0
    # the script only enhances: the filter hides rows not mentioning what is typed
    page.fill("#filter", "numpy-hostile")
    visible = [rows.nth(i).is_visible() for i in range(n)]
    assert 0 < sum(visible) < n
    assert page.locator("script").count() == 1  # ours; none from the data
    page.screenshot(path=str(tmp_path / "index.png"), full_page=True)
    assert (tmp_path / "index.png").stat().st_size > 10_000


def test_finding_page_in_chromium(runs, browser, tmp_path):
    rec = next(r for r in read(runs["a"] / "results.jsonl") if r["verdict"] == "deviation")
    path = runs["merged"] / "findings" / f"{rec['pytest_id']}--{rec['backend']}--cpu.html"
    page, problems = open_page(browser, path)
    assert problems == []
    stage = rec["localization"]["stage"]
    highlighted = page.locator("svg.dataflow .highlighted")
    assert {highlighted.nth(i).get_attribute("data-stage") for i in range(highlighted.count())} == {stage}
    # and it is drawn so, also where the stage has no observable of its own (no verdict colour):
    # its outline is thick and red
    hidden = json.loads(json.dumps(rec))
    hidden["localization"]["stage"] = "normalized"
    folder = tmp_path / "hidden"
    folder.mkdir()
    (folder / "results.jsonl").write_text(json.dumps(hidden) + "\n")
    from crossbn.report import build

    build([folder], folder)
    page, problems = open_page(browser, folder / "findings" / path.name)
    assert problems == []
    box = page.locator('svg.dataflow [data-stage="normalized"]')
    assert box.evaluate("e => getComputedStyle(e).stroke") == "rgb(198, 40, 40)"
    assert box.evaluate("e => getComputedStyle(e).strokeWidth") == "4px"
    assert page.locator("svg.channel-errors").count() == 1
    assert page.locator("table.evidence tbody tr").count() >= 1
    assert rec["pytest_id"] in page.locator("#case pre.command").inner_text()
    page.screenshot(path=str(tmp_path / "finding.png"), full_page=True)


def test_pages_read_without_javascript(runs, browser):
    page, problems = open_page(browser, runs["merged"] / "index.html", javascript=False)
    assert problems == []
    assert page.locator("#findings-table tbody tr").first.is_visible()
    assert not page.locator("#filter").is_visible()  # a control that needs the script stays hidden


def test_hostile_finding_page_in_chromium(runs, browser):
    rec = next(r for r in read(runs["b"] / "results.jsonl") if r["verdict"] == "error")
    page, problems = open_page(browser, runs["merged"] / "findings" / f"{rec['pytest_id']}--numpy-hostile--cpu.html")
    assert problems == []  # no alert dialog, no request for "x"
    assert page.locator("img").count() == 0 and page.locator("script").count() == 1
    assert MARKUP in page.locator("pre.reason").inner_text()


@pytest.mark.slow  # a real framework's worker (Keras, PyTorch): 4-6 s
def test_network_page_in_chromium(browser, tmp_path):
    """A models-suite deviation (PyTorch with a planted eps) gets CRADLE's map."""
    pytest.importorskip("torch")
    out = tmp_path / "models"
    crossbn(
        "run",
        "--suite",
        "models",
        "--backends",
        "torch-wrong-eps",
        "--backend-module",
        MODEL_FAULTS,
        "-n",
        "0",
        "--no-conventions",
        "--progress",
        "off",
        "--out",
        str(out),
        "--",
        "-k",
        "train_eval and bn_before_relu and f32",
    )
    rec = next(r for r in read(out / "results.jsonl") if r["verdict"] == "deviation")
    page, problems = open_page(browser, out / "findings" / f"{rec['pytest_id']}--torch-wrong-eps--cpu.html")
    assert problems == []
    graphs = page.locator("svg.network")
    assert graphs.count() == len(rec["layers"])
    introducing = {k.split(".")[1] for k in rec["localization"]["layers"]}
    marked = page.locator("svg.network .introduces[data-layer]")
    assert {marked.nth(i).get_attribute("data-layer") for i in range(marked.count())} == introducing
    page.screenshot(path=str(tmp_path / "network.png"), full_page=True)


def test_a_run_stopped_early_is_marked_incomplete(tmp_path):
    suite = tmp_path / "far.toml"
    suite.write_text(
        "[[group]]\nname = 'far'\nshape = [64, 4, 8]\noffset_ratio = 1000.0\ngradients = false\n"
        "[group.axes]\nseed = [1, 2, 3]\n"
    )
    crossbn(
        "run",
        "--suite",
        str(suite),
        "--backends",
        "numpy-onepass",
        "-n",
        "0",
        "--no-conventions",
        "--out",
        str(tmp_path / "x"),
        "--",
        "-x",
        env={"CROSSBN_BACKEND_MODULE": VARIANTS},
    )
    info = json.loads((tmp_path / "x" / "run.json").read_text())
    assert info["complete"] is False and len(read(tmp_path / "x" / "results.jsonl")) == 1
    assert 'id="incomplete"' in (tmp_path / "x" / "index.html").read_text()
