"""`crossbn run`: the suite under pytest (pytest-xdist for -n) into a run folder, then
the run's end: the observed conventions, the bug reports, --strict and --compare's
exit status. `--resume DIR` finishes an interrupted run with its own options."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from crossbn.app.options import OPTIONS, RECORDED


def run(args: argparse.Namespace, extra: list[str]) -> int:
    import pytest

    if not (args.out or args.resume or os.environ.get("CROSSBN_OUT")):
        args.out = str(Path("reports") / time.strftime("%Y%m%d-%H%M%S"))
    problem = usage_problem(args)
    if problem:
        print(f"crossbn run: {problem}", file=sys.stderr)
        return 2
    out = Path(args.out or os.environ["CROSSBN_OUT"])
    existed = out.exists()
    out.mkdir(parents=True, exist_ok=True)
    progress = args.progress or os.environ.get("CROSSBN_PROGRESS") or "auto"
    argv = [
        "--pyargs",
        "crossbn.conformance",
        "-p",
        "no:cacheprovider",
        f"--crossbn-out={out}",
        "-q",
        "-rN",
        "--tb=no",
        f"--crossbn-progress={progress}",
        # progress replaces the count filling
        "-o",
        f"console_output_style={'count' if progress == 'off' else 'classic'}",
    ]
    # Only what was given on the command line; the plugin applies CROSSBN_*
    # environment variables and defaults, in one place.
    for opt in OPTIONS:
        value = getattr(args, opt.name, None) if opt.on_run else None
        if opt.kind == "switch" and value:
            argv.append(opt.pytest_flag)
        elif opt.kind == "list":
            argv += [f"{opt.pytest_flag}={v}" for v in value or ()]
        elif opt.kind == "value" and value is not None and opt.name not in ("out", "progress"):  # both set above
            argv.append(f"{opt.pytest_flag}={value}")
    if args.resume:
        argv.append("--crossbn-resume")
        argv += [a for flag, value in (("-k", args.keyword), ("-m", args.markexpr)) if value for a in (flag, value)]
    if args.n not in ("0", 0):
        argv += ["-n", str(args.n)]
    argv += extra
    print(f"crossbn run: -n {args.n}, results -> {out / 'results.jsonl'}", flush=True)
    code = pytest.main(argv)
    if code == pytest.ExitCode.NO_TESTS_COLLECTED and args.resume and (out / "results.jsonl").exists():
        code = pytest.ExitCode.OK  # nothing was left to run: the run folder is whole
    if code == pytest.ExitCode.INTERRUPTED:
        print(
            f"crossbn run: interrupted; what finished is in {out} (`crossbn run --resume {out}` runs the rest)",
            file=sys.stderr,
        )
        return 130
    if code in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        if args.conventions:
            observe_conventions(args, out)
        if args.bug_reports and (out / "results.jsonl").exists():
            bug_reports(args, out)
        report = out / "index.html"
        if report.exists():
            print(f"crossbn run: results in {out / 'results.jsonl'}, report {report}")
        else:
            print(
                f"crossbn run: results in {out / 'results.jsonl'}; the report could not be written "
                f"(see above; `crossbn report {out}` retries)",
                file=sys.stderr,
            )
        regressed = regressions(out)
        for where in regressed:
            print(f"crossbn run: the gate fails {where}", file=sys.stderr)
        if regressed:
            return 1
        return 1 if (args.strict and code == pytest.ExitCode.TESTS_FAILED) else 0
    if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.NO_TESTS_COLLECTED) and not existed:
        shutil.rmtree(out, ignore_errors=True)  # nothing ran: no folder left behind
    if code == pytest.ExitCode.USAGE_ERROR:
        return 2
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("crossbn run: no test selected (check --suite, --dtypes, --backends and any -k)", file=sys.stderr)
        return 2
    return 3


class _Given:
    """`crossbn run`'s arguments as the plugin reads its own (config.getoption),
    so that the one check of the options (options.Resolved) runs here first."""

    def __init__(self, args: argparse.Namespace):
        self.args = args

    def getoption(self, name: str, default=None):
        value = getattr(self.args, name.removeprefix("crossbn_"), None)
        return default if value is None else value


def usage_problem(args: argparse.Namespace) -> str | None:
    """The first thing wrong with the arguments, in `crossbn run`'s words, found
    before anything is written or run; None when they are fine."""
    import pytest

    from crossbn.app.options import Resolved
    from crossbn.execution.limits import seconds

    if str(args.n) != "auto" and not str(args.n).isdigit():
        return f"-n {args.n}: a number of worker processes (0: none), or auto"
    if args.bug_reports:
        try:
            seconds(args.repro_budget, "--repro-budget")
        except ValueError as e:
            return str(e)
    if args.resume:
        try:
            resume_options(args)
        except ValueError as e:
            return str(e)
    if args.no_cache:
        args.cache = "off"
    from crossbn.backends import BackendError

    try:
        Resolved(_Given(args))
    except pytest.UsageError as e:
        return str(e).replace("--crossbn-", "--")
    except BackendError as e:
        return f"--backends: {e}"
    return None


def resume_options(args: argparse.Namespace) -> None:
    """--resume DIR: the run's own options, from DIR/run.json; the options
    that select tests may not be given again (they would select others)."""
    from crossbn.records.resume import run_options

    given = [
        f"--{n.replace('_', '-')}"
        for n in ("suite", "dtypes", "backends", "devices", "shard", "compare", "known", "max_case_bytes")
        if getattr(args, n) is not None
    ]
    given += ["--backend-module"] * bool(args.backend_module) + ["--out"] * bool(args.out)
    if given:
        raise ValueError(
            f"--resume {args.resume}: {', '.join(given)} cannot be given with --resume "
            f"(the run's own options, from its run.json, are used)"
        )
    options = run_options(Path(args.resume))
    args.out = args.resume
    for name in RECORDED:  # a --timeout given now wins over the run's
        if options.get(name) is not None and (name != "timeout" or args.timeout is None):
            setattr(args, name, str(options[name]))
    args.backend_module = list(options.get("backend_modules") or [])
    args.known_skip = args.known_skip or bool(options.get("known_skip"))
    args.keyword, args.markexpr = options.get("keyword") or "", options.get("markexpr") or ""


def bug_reports(args: argparse.Namespace, out: Path) -> None:
    """A verified bug report per root cause of the new findings; the report rebuilt to link them."""
    from crossbn.bugreport.batch import write_all
    from crossbn.execution.limits import seconds
    from crossbn.report import build

    write_all(
        out,
        seconds(args.repro_budget, "--repro-budget"),
        known_file=args.known or os.environ.get("CROSSBN_KNOWN"),
        backend_modules=args.backend_module,
    )
    build([out], out)


def regressions(out: Path) -> list[str]:
    """Where the run failed its gate (the --fail-on classes, regressed by
    default): against its baseline (comparison.json), or side by side, one
    release against the other (side-by-side.json)."""
    import json

    from crossbn.upgrade.baseline import COMPARISON_FILE, SIDE_BY_SIDE_FILE, failing

    def counts(comparison: dict) -> str:  # "regressed 3, removed 2"
        return ", ".join(f"{c} {n}" for c, n in failing(comparison).items())

    found = []
    try:
        c = json.loads((out / COMPARISON_FILE).read_text())
        if counts(c):
            found.append(f"against {c['base']}: {counts(c)} (see {out / COMPARISON_FILE})")
    except (OSError, ValueError, KeyError):
        pass
    try:
        for c in json.loads((out / SIDE_BY_SIDE_FILE).read_text())["comparisons"]:
            if counts(c):
                found.append(f"for {c['new']} against {c['base']}: {counts(c)} (see {out / SIDE_BY_SIDE_FILE})")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return found


def observe_conventions(args: argparse.Namespace, out: Path) -> None:
    """`crossbn conventions` on the run's backends and devices, into the run's
    folder, then the report (written by the plugin) again, now with them.
    After the tests, so that bad options are reported by the run itself."""
    from crossbn.conventions.command import run as observe
    from crossbn.report import ReportError, build

    observed = observe(
        argparse.Namespace(
            backends=args.backends,
            devices=args.devices,
            out=str(out),
            timeout=args.timeout,
            strict=False,
            backend_module=args.backend_module,
            n="1" if str(args.n) == "0" else str(args.n),
        )
    )
    if observed == 0 and (out / "results.jsonl").exists():
        try:
            build([out], out)
        except ReportError as e:
            print(f"crossbn run: report not rewritten: {e}", file=sys.stderr)
