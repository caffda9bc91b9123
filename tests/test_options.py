"""Each option of a run is declared once (crossbn/app/options.py) and appears
as a pytest option, a `crossbn run` flag, a CROSSBN_* variable and a row of
the docs' table, all made from that one record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crossbn.app.cli import build_parser
from crossbn.app.options import OPTIONS, Option, markdown

from run_crossbn import crossbn

ROOT = Path(__file__).resolve().parents[1]


def _run_flags() -> set[str]:
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    return {flag for action in run._actions for flag in action.option_strings}


def test_every_option_is_a_pytest_option_and_a_run_flag():
    helped = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    ).stdout
    flags = _run_flags()
    for opt in OPTIONS:
        assert opt.pytest_flag in helped, opt.name
        assert opt.env in helped, opt.name
        assert opt.run_flag in flags or not opt.on_run, opt.name
    assert "--resume" in flags  # `crossbn run --resume DIR`, its own (the plugin's is a switch on --crossbn-out)


def test_the_docs_table_is_the_generated_one():
    text = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    start = text.index("<!-- options-table")
    block = text[text.index("\n", start) + 1 : text.index("<!-- /options-table -->")].strip()
    assert block == markdown(), "regenerate it: python -m crossbn.app.reference"


def test_the_reference_page_holds_every_commands_help_as_it_is():
    from crossbn.app.reference import PAGE, help_text, render

    text = PAGE.read_text(encoding="utf-8")
    assert render(text) == text, "regenerate it: python -m crossbn.app.reference"
    for command in (
        "",
        "run",
        "report",
        "baseline save",
        "compare",
        "known",
        "bugs",
        "repro",
        "fuzz",
        "bisect",
        "conventions",
    ):
        assert help_text(command) in text, command  # each has its section


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "max-bytes", "env": "CROSSBN_X"}, "a Python name"),
        ({"name": "x", "env": "X"}, r"CROSSBN_\* variable \(got 'X'\)"),
        ({"name": "x", "env": "CROSSBN_X", "kind": "flag"}, "kind 'flag'"),
        ({"name": "x", "env": "CROSSBN_X", "default": "z", "choices": ("a", "b")}, "default 'z' is not one of"),
    ],
)
def test_a_malformed_option_is_refused_when_declared(kwargs, message):
    kwargs = {"default": None, "help": "h", **kwargs}
    with pytest.raises(ValueError, match=message):
        Option(**kwargs)


def test_a_run_flag_reaches_the_plugin(tmp_path):
    """--diagnosis each on `crossbn run` is --crossbn-diagnosis=each for pytest: the run records it."""
    out = tmp_path / "run"
    module = ROOT / "tests" / "backends" / "numpy_variants.py"
    args = ["run", "--suite", "smoke", "--backends", "numpy-onepass", "-n", "0", "--backend-module", module]
    proc = crossbn(
        *args,
        "--no-conventions",
        "--diagnosis",
        "each",
        "--known-skip",
        "--out",
        out,
        "--",
        "-k",
        "f64",
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = json.loads((out / "run.json").read_text())
    assert run["options"]["diagnosis"] == "each" and run["options"]["known_skip"] is True, run["options"]
