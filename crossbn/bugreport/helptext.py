"""The help of `crossbn bugs`, `repro` and `fuzz`, laid out as crossbn's other subcommands' is:
a description wrapped once, and examples at the end (argparse's RawDescriptionHelpFormatter)."""

from __future__ import annotations

import textwrap


def examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def wrapped(text: str) -> str:
    return textwrap.fill(text, 96)
