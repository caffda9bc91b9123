"""The command line's reference page (docs/reference/cli.md), made from the
parser itself: each `## \\`crossbn COMMAND\\`` section's help block is the
command's `--help`, and the options table is options.py's. A test holds the
page to it; `python -m crossbn.app.reference` rewrites it."""

from __future__ import annotations

import os
import re
from pathlib import Path

from crossbn.app.cli import build_parser
from crossbn.app.options import markdown

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "cli.md"
WIDTH = "100"  # the help's line width on the page, whatever the terminal's
_SECTION = re.compile(r"(## `crossbn(?P<command>(?: [a-z]+)*)`\n\n```text\n)(?P<help>.*?)(```)", re.S)
_TABLE = re.compile(r"(<!-- options-table[^\n]*\n)(.*?)(<!-- /options-table -->)", re.S)


def help_text(command: str) -> str:
    """`crossbn COMMAND --help` as printed WIDTH columns wide."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        for word in command.split():
            sub = next(a for a in parser._actions if a.dest in ("command", "action") and a.choices)  # noqa: SLF001
            parser = sub.choices[word]
        return parser.format_help()
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def render(page: str) -> str:
    """The page with every help block and the options table made anew."""
    page = _SECTION.sub(lambda m: m.group(1) + help_text(m.group("command").strip()) + m.group(4), page)
    return _TABLE.sub(lambda m: m.group(1) + markdown() + "\n" + m.group(3), page)


if __name__ == "__main__":
    PAGE.write_text(render(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {PAGE}")
