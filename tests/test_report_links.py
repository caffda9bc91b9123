"""Links out of the report's tables and pages: each case of the side-by-side
table (tests/test_side_by_side.py's real run of two releases, each under its
own interpreter) opens its finding page, and a finding page's "Bug report"
section gives the `crossbn repro` line that, typed where the report was made,
finds that finding (and, with a real framework, writes the bug report that
the rebuilt page then links)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_report import VARIANTS, runs  # noqa: F401 - the fixture: two real runs and their merged report
from test_side_by_side import drifted, venvs  # noqa: F401 - the fixtures: a real side-by-side run

from crossbn.records.results import read
from crossbn.report import pages


class _Page(HTMLParser):
    """The <a> hrefs and texts inside <td class="case">, and the text of <pre class="command repro">."""

    def __init__(self, path: Path):
        super().__init__()
        self.case_links, self.case_cells, self.repro = [], 0, []
        self._in_case = self._in_repro = False
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "case" in (a.get("class") or "").split():
            self._in_case, self.case_cells = True, self.case_cells + 1
        if tag == "a" and self._in_case:
            self.case_links.append(a["href"])
        if tag == "pre" and "repro" in (a.get("class") or "").split():
            self._in_repro = True

    def handle_endtag(self, tag):
        self._in_case = self._in_case and tag != "td"
        self._in_repro = self._in_repro and tag != "pre"

    def handle_data(self, data):
        if self._in_repro:
            self.repro.append(data)


def test_side_by_side_cases_link_to_their_findings(drifted):  # noqa: F811
    out, _ = drifted
    page = _Page(out / "side-by-side.html")
    findings = [r for r in read(out / "results.jsonl") if r["verdict"] == "deviation"]
    assert len(findings) == 3 and page.case_cells == 3
    assert sorted(page.case_links) == sorted(pages.page_href(r) for r in findings)
    for href in page.case_links:
        target = out / href
        assert target.is_file() and "numpy-drifting@drift-2.0" in target.read_text(encoding="utf-8")


def _repro_line(report: Path) -> tuple[dict, str]:
    """A finding with a page of its own, and the crossbn repro line its page gives."""
    rec = next(r for g in pages.root_cause_groups(read(report / "results.jsonl")) for r in g[:1])
    return rec, "".join(_Page(report / pages.page_href(rec)).repro).strip()


def test_the_repro_line_finds_its_finding_from_where_the_report_was_made(runs, tmp_path):  # noqa: F811
    work = tmp_path / "work"
    shutil.copytree(runs["a"], work / "nested" / "run-a", ignore=shutil.ignore_patterns("findings", "*.html"))
    shutil.copy(VARIANTS, work)  # the line names a backend module by its file name: run where it is
    env = {**os.environ, "CROSSBN_BACKEND_MODULE": VARIANTS}
    build = [sys.executable, "-m", "crossbn", "report", "nested/run-a"]
    subprocess.run(build, cwd=work, check=True, capture_output=True, timeout=300, env=env)
    rec, line = _repro_line(work / "nested" / "run-a")
    assert line.startswith("crossbn repro ") and " --results nested/run-a" in line
    proc = subprocess.run(
        [sys.executable, "-m", *shlex.split(line), "--budget", "0"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    # found, rerun and shrunk; the NumPy test backend has no standalone repro.py template, so it stops there
    assert f"crossbn repro: {rec['pytest_id']} on {rec['backend']}/{rec['device']}" in proc.stdout, proc.stderr
    # built from elsewhere, the line names the folder alone: a page names no absolute path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run([*build[:-1], str(work / "nested" / "run-a")], cwd=elsewhere, check=True, env=env)
    assert " --results run-a" in _repro_line(work / "nested" / "run-a")[1]


@pytest.mark.slow  # a real framework (PyTorch): a run, then crossbn repro, ~30 s
def test_the_repro_line_writes_the_bug_report_the_page_then_links(tmp_path):
    pytest.importorskip("torch")
    run = [sys.executable, "-m", "crossbn", "run", "--suite", "smoke", "--backends", "torch", "-n", "0"]
    run += ["--no-conventions", "--progress", "off", "--out", "r1", "--", "-k", "smoke-f16-16x4"]
    subprocess.run(run, cwd=tmp_path, capture_output=True, timeout=600)
    rec, line = _repro_line(tmp_path / "r1")
    assert rec["backend"] == "torch" and " --results r1" in line
    proc = subprocess.run(
        [sys.executable, "-m", *shlex.split(line), "--budget", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    subprocess.run([sys.executable, "-m", "crossbn", "report", "r1"], cwd=tmp_path, check=True, timeout=300)
    page = (tmp_path / "r1" / pages.page_href(rec)).read_text(encoding="utf-8")
    assert f'href="../bug-reports/{pages.slug(rec)}/repro.py"' in page
    assert f'href="../bug-reports/{pages.slug(rec)}/ISSUE.md"' in page
