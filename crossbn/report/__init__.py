"""Self-contained HTML reports of crossbn runs.

    crossbn report RESULTS... --out DIR [--pair A,B]

renders one or more results (a results.jsonl, or the run folder holding it,
with its run.json and conventions.jsonl beside it) into DIR/index.html, a
page per root cause of the findings under DIR/findings/ (a network page for
a `models` result) and a page per backend pair under DIR/pairs/. `crossbn
run` and the pytest plugin call `build` when a run ends. Modules: pages.py
(the index, and what the pages share), finding_page.py, pairs.py (backend
against backend), fingerprints.py (fingerprints in words), svg.py and
diagrams.py (the charts), render.py (the Jinja2 templates in templates/).
"""

from __future__ import annotations

from pathlib import Path

from crossbn.records.sources import CONVENTIONS_FILE, ReportError

__all__ = ["ReportError", "build"]


def build(results, out: Path | str, *, title: str = "crossbn report", pairs=None) -> Path:
    """Render `results` (paths of results.jsonl files or run folders) into
    `out`; returns the path of index.html. When `out` is not one of the
    sources' folders, the merged records are also written to
    `out/results.jsonl` (and their conventions to `out/conventions.jsonl`),
    so the report folder carries its data. `pairs`: --pair values ("A,B"),
    the backend pairs to show against each other (default: every pair)."""
    import json

    import jinja2

    from crossbn.records.sources import load
    from crossbn.records.store import merge
    from crossbn.report.pairs import parse
    from crossbn.report.render import write

    out = Path(out)
    sources = load(list(results))
    chosen = parse(pairs, {r["backend"] for r in sources.records})  # a bad --pair: before any work
    folders = [src.path.parent.resolve() for src in sources.sources]
    if len(folders) > 1 and out.resolve() in folders:
        raise ReportError(
            f"--out {out} is one of the sources' folders: a merged report goes into a folder "
            f"of its own (its results.jsonl would no longer be that run's)"
        )
    out.mkdir(parents=True, exist_ok=True)
    if all(src.path.parent.resolve() != out.resolve() for src in sources.sources):
        merge([src.path for src in sources.sources], out / "results.jsonl")
        if sources.conventions:
            (out / CONVENTIONS_FILE).write_text(
                "".join(json.dumps(c) + "\n" for c in sources.conventions), encoding="utf-8"
            )
    try:
        return write(sources, out, title=title, pairs=chosen or None)
    except (TypeError, ValueError, AttributeError, KeyError, jinja2.TemplateError) as e:
        # a record of the right keys but wrong types: name it rather than a traceback
        raise ReportError(
            f"cannot render these results ({type(e).__name__}: {e}); are they crossbn results of this version?"
        ) from e
