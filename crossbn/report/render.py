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
from crossbn.report import finding_page, pages, pairs as pairs_mod

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


def typed(out: Path) -> str:
    """The report's folder as the user would type it: relative to the working
    directory when inside it, else its name (a page names no absolute path)."""
    try:
        return str(out.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):  # outside it, or the working directory is gone
        return out.resolve().name


def write(sources, out: Path, title: str = "crossbn report", pairs: list[tuple[str, str]] | None = None) -> Path:
    """Render index.html, a page per root-cause group of findings (and per
    member where it adds to its group's page), a network page per model
    finding and a page per backend pair (`pairs`; None: every pair, with
    the matrix of them on the index) into `out`; returns the index's path."""
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    generated = time.strftime("%Y-%m-%d %H:%M:%S %z")
    run_of = {}
    for src in sources.sources:  # the run (suite, ...) each record came from: the last source wins, as in merging
        for rec in src.records:
            run_of[(rec["case_id"], rec["backend"], rec["device"])] = src.run
    results = typed(out)
    findings_dir = out / pages.FINDINGS_DIR
    findings_dir.mkdir(exist_ok=True)
    for stale in findings_dir.glob("*.html"):  # pages of an earlier report in this folder
        stale.unlink()
    finding_t, network_t = env.get_template("finding.html.j2"), env.get_template("network.html.j2")

    def run(rec):
        return run_of.get((rec["case_id"], rec["backend"], rec["device"]))

    for rec in sources.records:
        if pages.is_finding(rec) and pages.is_network(rec):
            html = network_t.render(title=title, generated=generated, **finding_page.network(rec, run(rec), out))
            (out / pages.page_href(rec)).write_text(html, encoding="utf-8")
    # a page per root-cause group, and per member only where it adds to it
    rivals = pages.rivals_by_result(sources.records)
    for group in pages.root_cause_groups(sources.records):
        for rec in group:
            if rec is group[0] or pages.adds_to_its_group(rec, out):
                html = finding_t.render(
                    title=title,
                    generated=generated,
                    **finding_page.finding(
                        rec,
                        run(rec),
                        out,
                        group if rec is group[0] else None,
                        results,
                        rivals.get(pages.result_key(rec)),
                    ),
                )
                (out / pages.page_href(rec)).write_text(html, encoding="utf-8")
    links = pages.finding_links(sources.records, out)
    comparison_t = env.get_template("comparison.html.j2")
    for page, comparisons, side in (
        ("comparison.html", [sources.comparison] if sources.comparison else [], False),
        ("side-by-side.html", sources.side_by_side, True),
    ):
        if comparisons:
            (out / page).write_text(
                comparison_t.render(
                    title=title,
                    generated=generated,
                    comparisons=pages.linked_comparisons(comparisons, links),
                    side_by_side=side,
                ),
                encoding="utf-8",
            )
    pair_view = write_pairs(env, sources.records, out, pairs, links, title=title, generated=generated)
    index = out / "index.html"
    tmp = out / "index.html.tmp"
    tmp.write_text(
        env.get_template("index.html.j2").render(
            title=title, generated=generated, **pages.index(sources, links, pair_view)
        ),
        encoding="utf-8",
    )
    tmp.replace(index)
    return index


def write_pairs(env, records, out: Path, pairs, links: dict, **common) -> dict | None:
    """A page per backend pair under pairs/ (the named ones, or every pair);
    returns the index's section: the named pairs' summaries, or the matrix
    of every pair (None with fewer than two backends)."""
    folder = out / pairs_mod.PAIRS_DIR
    for stale in folder.glob("*.html") if folder.is_dir() else ():
        stale.unlink()
    backends = sorted({r["backend"] for r in records})
    chosen = pairs if pairs else pairs_mod.all_pairs(backends)
    if not chosen:
        return None
    folder.mkdir(exist_ok=True)
    template = env.get_template("pair.html.j2")
    summaries = {}
    indexed = pairs_mod.by_backend(records)
    for a, b in chosen:
        view = pairs_mod.pair(records, a, b, links, indexed)
        (out / view["href"]).write_text(
            template.render(pair=view, rows_per_state=pairs_mod.ROWS_PER_STATE, **common), encoding="utf-8"
        )
        summaries[(a, b)] = {k: v for k, v in view.items() if k != "rows"}
    if pairs:
        return {"named": list(summaries.values()), "matrix": None}
    return {"named": None, "matrix": pairs_mod.matrix(backends, summaries)}
