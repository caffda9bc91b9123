"""Jinja2 rendering of the report's pages into a folder.

Autoescaping is on for every template (a case name, an exception message or
a version string may hold markup); a field an older or partial record lacks
renders empty (ChainableUndefined), it does not stop the report; the stylesheet and the small sorting
script are inlined into each page, so a page needs no other file, no
network and no absolute path: the folder can be moved, zipped or attached.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jinja2

from crossbn.records.results import number
from crossbn.report import pages

_TEMPLATES = Path(__file__).resolve().parent / "templates"


def _fmt(x, digits: int = 3) -> str:
    """Numbers as the report prints them: 3 significant digits, '–' for none."""
    if x is None or x == "":
        return "–"
    x = number(x)
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "∞" if x > 0 else "−∞"
    return f"{x:.{digits}g}"


def _exact(x) -> str:
    """A value as the record holds it (full precision)."""
    return "–" if x is None else (repr(x) if isinstance(x, float) else str(x))


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(fmt=_fmt, exact=_exact, tojson_compact=lambda v: json.dumps(v, sort_keys=True))
    env.globals.update(
        inline_css=(_TEMPLATES / "report.css").read_text(encoding="utf-8"),
        inline_js=(_TEMPLATES / "report.js").read_text(encoding="utf-8"),
    )
    return env


def write(sources, out: Path, title: str = "crossbn report") -> Path:
    """Render index.html, a page per root-cause group of findings (and per
    member where it adds to its group's page), and a network page per model
    finding into `out`; returns the index's path."""
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    generated = time.strftime("%Y-%m-%d %H:%M:%S %z")
    run_of = {}
    for src in sources.sources:  # the run (suite, ...) each record came from: the last source wins, as in merging
        for rec in src.records:
            run_of[(rec["case_id"], rec["backend"], rec["device"])] = src.run
    findings_dir = out / pages.FINDINGS_DIR
    findings_dir.mkdir(exist_ok=True)
    for stale in findings_dir.glob("*.html"):  # pages of an earlier report in this folder
        stale.unlink()
    finding_t, network_t = env.get_template("finding.html.j2"), env.get_template("network.html.j2")

    def run(rec):
        return run_of.get((rec["case_id"], rec["backend"], rec["device"]))

    for rec in sources.records:
        if pages.is_finding(rec) and pages.is_network(rec):
            html = network_t.render(title=title, generated=generated, **pages.network(rec, run(rec), out))
            (out / pages.page_href(rec)).write_text(html, encoding="utf-8")
    # a page per root-cause group, and per member only where it adds to it
    for group in pages.root_cause_groups(sources.records):
        for rec in group:
            if rec is group[0] or pages.adds_to_its_group(rec, out):
                html = finding_t.render(
                    title=title,
                    generated=generated,
                    **pages.finding(rec, run(rec), out, group if rec is group[0] else None),
                )
                (out / pages.page_href(rec)).write_text(html, encoding="utf-8")
    comparison_t = env.get_template("comparison.html.j2")
    for page, comparisons, side in (
        ("comparison.html", [sources.comparison] if sources.comparison else [], False),
        ("side-by-side.html", sources.side_by_side, True),
    ):
        if comparisons:
            (out / page).write_text(
                comparison_t.render(title=title, generated=generated, comparisons=comparisons, side_by_side=side),
                encoding="utf-8",
            )
    index = out / "index.html"
    tmp = out / "index.html.tmp"
    tmp.write_text(
        env.get_template("index.html.j2").render(title=title, generated=generated, **pages.index(sources)),
        encoding="utf-8",
    )
    tmp.replace(index)
    return index
