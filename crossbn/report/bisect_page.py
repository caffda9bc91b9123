"""The page of a `crossbn bisect` run (bisect.html beside its bisect.json):
the answers grouped by release, the releases that could not run, and the
timeline of every release run, each result a column."""

from __future__ import annotations

import time
from pathlib import Path

from crossbn.report.render import environment


def write(view: dict, out: Path) -> Path:
    """Render `view` (crossbn/app/bisect_command.py's `view`) to out/bisect.html."""
    page = out / "bisect.html"
    html = environment().get_template("bisect.html.j2").render(generated=time.strftime("%Y-%m-%d %H:%M:%S %z"), **view)
    page.write_text(html, encoding="utf-8")
    return page
