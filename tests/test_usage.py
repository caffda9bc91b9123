"""Usage as a new user meets it: every path or name problem is one line and
exit 2 before any work starts, with nothing left behind; the gate's options
(--baselines, --fail-on, --compare checked up front); --dtypes; --version;
an example in every subcommand's help."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest

from run_crossbn import NUMPY, RUN, crossbn, one_line_exit_2


def _results(tmp_path, backends="numpy-twopass,numpy-onepass", name="r", *extra) -> Path:
    out = tmp_path / name
    proc = crossbn(*RUN, "--backends", backends, "--out", out, *extra, "--", "-k", "f32")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("where", ["file", "under a file", "unwritable"])
def test_every_subcommand_refuses_an_output_path_it_cannot_write(tmp_path, places, where):
    bad = places[where]
    results = _results(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    commands = {
        "run": (*RUN, "--backends", "numpy-twopass", "--out", bad),
        "report": ("report", results, "--out", bad),
        "compare": ("compare", results, results, "--out", bad),
        "baseline": ("baseline", "save", "before", results, "--baselines", bad),
        "conventions": ("conventions", "--backend-module", NUMPY, "--backends", "numpy-twopass", "--out", bad),
    }
    for name, args in commands.items():
        proc = crossbn(*args, cwd=tmp_path)
        one_line_exit_2(proc, str(bad))
        assert sorted(p.name for p in tmp_path.iterdir()) == before, name  # nothing made on the way


def test_usage_errors_of_run_leave_no_folder_behind(tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("# no cases\n")
    cases = {
        "unknown suite": (("--suite", "nosuch"), "--suite"),
        "empty catalogue": (("--suite", empty), "no cases"),
        "unknown dtype": (("--dtypes", "float17"), "--dtypes float17"),
        "unknown backend": (("--backends", "numpy-nosuch"), "numpy-nosuch"),
        "bad -n": (("-n", "many"), "-n many"),
        "bad --fail-on": (("--compare", tmp_path, "--fail-on", "regresed"), "--fail-on regresed"),
        "cache is a file": (("--cache", empty), f"--cache {empty}: is a file"),
        "unknown known file": (("--known", "nosuch"), "--known: nosuch"),
    }
    for what, (args, fragment) in cases.items():
        out = tmp_path / what.replace(" ", "-")
        base = [a for a in RUN if a != "--suite" and a != "smoke"] if "--suite" in args else list(RUN)
        proc = crossbn(*base, "--backends", "numpy-twopass", "--out", out, *args)
        one_line_exit_2(proc, fragment)
        assert not out.exists(), what


def test_a_misspelt_baseline_stops_the_run_before_it_starts(tmp_path):
    (tmp_path / "baselines" / "before").mkdir(parents=True)
    (tmp_path / "baselines" / "before" / "baseline.jsonl").write_text("")
    out = tmp_path / "after"
    proc = crossbn(*RUN, "--backends", "numpy-twopass", "--out", out, "--compare", "befor", cwd=tmp_path)
    line = one_line_exit_2(proc, "--compare", "befor", "before")  # names the baselines there are
    assert "baselines in baselines/: before" in line
    assert not out.exists() and "passed" not in proc.stdout  # no test ran


def test_the_gate_from_another_folder_and_fail_on_removed(tmp_path):
    """A baseline of two backends; a later run where one stopped running. By
    default `removed` passes the gate; --fail-on regressed,removed fails it.
    The run is started from another folder, naming its baselines with --baselines."""
    before = _results(tmp_path, name="before")
    baselines = tmp_path / "kept"
    saved = crossbn("baseline", "save", "before", before, "--baselines", baselines)
    assert saved.returncode == 0, saved.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    common = (*RUN, "--backends", "numpy-twopass", "--compare", "before", "--baselines", baselines)
    passed = crossbn(*common, "--out", tmp_path / "a1", "--", "-k", "f32", cwd=elsewhere)
    assert passed.returncode == 0, passed.stderr[-3000:]
    comparison = json.loads((tmp_path / "a1" / "comparison.json").read_text())
    assert comparison["counts"].get("removed", 0) > 0 and comparison["fails"] == ["regressed"]

    gated = crossbn(*common, "--fail-on", "regressed,removed", "--out", tmp_path / "a2", "--", "-k", "f32")
    assert gated.returncode == 1, gated.stderr[-3000:]
    assert f"the gate fails against before: removed {comparison['counts']['removed']}" in gated.stderr

    # crossbn compare reads the same classes the same way
    assert crossbn("compare", "before", tmp_path / "a1", "--baselines", baselines).returncode == 0
    assert (
        crossbn("compare", "before", tmp_path / "a1", "--baselines", baselines, "--fail-on", "removed").returncode == 1
    )
    wrong_class = crossbn("compare", "before", tmp_path / "a1", "--baselines", baselines, "--fail-on", "remove")
    one_line_exit_2(wrong_class, "crossbn compare: --fail-on remove: unknown class(es) remove")
    bad = crossbn("compare", "befor", tmp_path / "a1", "--baselines", baselines)
    one_line_exit_2(bad, "befor", "before")


def test_dtypes_selects_float16_alone(tmp_path):
    """`-k f16` also selects bf16; --dtypes float16 selects float16 alone."""
    proc = crossbn(*RUN, "--backends", "numpy-twopass", "--out", tmp_path / "r", "--dtypes", "float16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "r" / "results.jsonl").read_text().splitlines()]
    assert records and {r["case"]["dtype"] for r in records} == {"float16"}
    from crossbn.spec.suites import load_suite

    assert len(records) == sum(c.dtype == "float16" for c in load_suite("smoke"))
    resumed = crossbn("run", "--resume", tmp_path / "r", "--dtypes", "float32")
    one_line_exit_2(resumed, "--dtypes")  # it selects tests: the run's own is used


def test_version():
    proc = crossbn("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"crossbn {version('crossbn')}"


def test_every_subcommand_help_ends_with_an_example():
    from crossbn.app.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001 - argparse keeps them there
    assert len(sub.choices) >= 12
    for name, p in sub.choices.items():
        text = p.format_help()
        assert "examples:\n  crossbn " + name.split()[0] in text, name


def test_backends_keeps_its_columns_with_a_long_name(tmp_path):
    long_name = "numpy-" + "x" * 40
    module = tmp_path / "longname.py"
    module.write_text(
        f"from tests.backends.numpy_variants import TwoPass\n\nclass Long(TwoPass):\n    name = {long_name!r}\n"
    )
    proc = crossbn("backends", "--backend-module", module, env={"PYTHONPATH": str(Path(__file__).parents[1])})
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.strip()]
    status_at = {line.index(" available") if " available" in line else line.index(" unavailable") for line in rows}
    assert len(status_at) == 1, proc.stdout  # the status column starts at one place on every line


def test_strict_means_in_the_readme_what_its_help_says():
    from crossbn.app.cli import build_parser

    run = next(a for a in build_parser()._actions if a.dest == "command").choices["run"]  # noqa: SLF001
    strict = next(a.help for a in run._actions if a.dest == "strict")  # noqa: SLF001
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert f"Add `--strict` to {strict}." in readme


def test_plain_pytest_refuses_an_output_path_that_is_a_file(tmp_path):
    import subprocess
    import sys

    afile = tmp_path / "afile"
    afile.write_text("")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--pyargs",
            "crossbn.conformance",
            f"--crossbn-out={afile}",
            "--crossbn-suite=smoke",
            f"--crossbn-backend-module={NUMPY}",
            "--crossbn-backends=numpy-twopass",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "INTERNALERROR" not in proc.stdout + proc.stderr
    assert f"--crossbn-out {afile}: is a file, not a folder" in proc.stderr
