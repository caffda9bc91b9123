"""The `crossbn` command: `main(argv)` parses the arguments (`build_parser`) and runs one subcommand.

  run          run a suite (pytest underneath, pytest-xdist for -n) into a run folder (run_command.py)
  backends     list backends, their versions and availability      suites       list the case catalogues
  baseline     save results as a baseline                            compare      classify results against one
  known        which findings a known-differences file covers        bugs         findings grouped by root cause
  repro        shrink a finding into repro.py and ISSUE.md           fuzz         search for findings (Hypothesis)
  report       render results into HTML                              cache        show or clear crossbn's cache
  conventions  observe each backend's conventions                     (each: commands.py, run_command.py, bugreport/)
Exit status of `run`: 0 when the run completed and its results were written, whatever they say (findings are the
product, not an error); 1 with --strict on a new finding, or with --compare on a --fail-on class (regressed); 2 for
bad usage, before anything runs; 3 for an internal error; 130 when interrupted (Ctrl-C, SIGTERM).
Full synopsis and design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import argparse
import os
import sys

from crossbn.app import commands
from crossbn.app.options import BY_NAME, OPTIONS, Option
from crossbn.app.run_command import run as run_command
from crossbn.bugreport.helptext import examples  # every subcommand's help ends with examples

_BACKEND_OPTIONS = ("backends", "devices", "out", "timeout", "backend_module")


def _add(parser, opt: Option, help_: str | None = None) -> None:
    """`opt` as a `crossbn` flag: given or not (None), the plugin applies the variable and the default."""
    text = f"{help_ or opt.help} {opt.where(run=True)}"
    if opt.kind == "switch":
        parser.add_argument(opt.run_flag, action="store_true", help=text)
    elif opt.kind == "list":
        parser.add_argument(opt.run_flag, action="append", default=[], metavar="FILE", help=text)
    else:
        parser.add_argument(opt.run_flag, metavar=opt.metavar, choices=opt.choices or None, help=text)


def _backend_options(parser, output: str, *, n_default: str, n_help: str, timeout_of: str, strict: str) -> None:
    """The options `run` and `conventions` share: which backends, where, how many at once."""
    _add(parser, BY_NAME["backends"])
    _add(parser, BY_NAME["devices"])
    _add(parser, BY_NAME["out"], f"the folder for {output}")
    parser.add_argument("-n", default=n_default, help=f"{n_help} (default: {n_default})")
    _add(parser, BY_NAME["timeout"], f"seconds per {timeout_of} before a worker is killed")
    _add(parser, BY_NAME["backend_module"])
    parser.add_argument("--strict", action="store_true", help=strict)
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show the frameworks' own log lines and warnings, silenced by default (env CROSSBN_VERBOSE=1)",
    )


def _baselines_option(parser) -> None:
    parser.add_argument(
        "--baselines",
        "--dir",
        dest="baselines",
        metavar="DIR",
        default="baselines",
        help="where baselines live (default: baselines; env CROSSBN_BASELINES)",
    )


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("crossbn")
    except PackageNotFoundError:  # run from a source tree that was never installed
        release = "unknown"
    p = argparse.ArgumentParser(
        prog="crossbn",
        description="Cross-backend BatchNorm consistency suite.",
        epilog=examples("crossbn run --suite smoke", "crossbn report reports/<timestamp>"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"crossbn {release}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run a suite against backends (pytest underneath)",
        description="Run a suite against backends into a run folder. Arguments after -- go to pytest "
        "(e.g. -- -k offset -x).",
        epilog=examples(
            "crossbn run --suite smoke --backends torch,keras-jax --dtypes float16",
            "crossbn run --known frameworks --compare before --fail-on regressed,removed",
            "crossbn run --resume reports/20261204-101500",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for opt in OPTIONS:  # declared once, in crossbn/app/options.py (the plugin's --crossbn-<name> too)
        if opt.on_run and opt.name not in _BACKEND_OPTIONS:
            _add(run, opt)
    run.add_argument(
        "--bug-reports",
        action="store_true",
        help="at the end, a verified repro.py and ISSUE.md per root cause of the new findings "
        "(DIR/bug-reports/, linked from each finding's page)",
    )
    run.add_argument("--repro-budget", default="30s", help="shrinking time per root cause (default: 30s)")
    run.add_argument(
        "--resume",
        metavar="DIR",
        help="finish the interrupted run in DIR with its own options (DIR/run.json): only the "
        "tests it has no record of, or a crash or timeout record, run",
    )
    run.add_argument(
        "--no-cache", action="store_true", help="neither read nor write crossbn's cache: every result judged afresh"
    )
    run.add_argument(
        "--no-conventions",
        dest="conventions",
        action="store_false",
        help="skip `crossbn conventions` after the tests (the report then has no conventions table)",
    )
    _backend_options(
        run,
        "results.jsonl",
        n_default="auto",
        n_help="parallel pytest-xdist workers, 0 for none",
        timeout_of="case",
        strict="exit 1 when a result is a new finding: a deviation, nan-mismatch, error, crash or timeout "
        "not covered by --known",
    )
    run.set_defaults(func=run_command, keyword="", markexpr="")  # --resume: the run's own -k and -m
    rp = sub.add_parser(
        "report",
        help="render results into a self-contained HTML report",
        description="Merge one or more results (results.jsonl files or run folders: workers, "
        "shards, machines) into DIR/index.html and one page per root cause of the findings.",
        epilog=examples(
            "crossbn report reports/20261204-101500",
            "crossbn report reports/20261204-101500 --pair torch,keras-jax",
            "crossbn report shard-1 shard-2 --out reports/all",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rp.add_argument("results", nargs="+", help="results.jsonl files or run folders")
    rp.add_argument("--out", help="report folder (default: the one source's folder; required with several)")
    rp.add_argument("--title", default="crossbn report", help="the report's title")
    rp.add_argument(
        "--pair",
        action="append",
        metavar="A,B",
        help="show backends A and B against each other (repeatable; default: every pair, as a matrix)",
    )
    rp.set_defaults(func=commands.report)
    save_example = examples("crossbn baseline save before reports/20261204-101500")
    bl = sub.add_parser(
        "baseline",
        help="store a run's results as a baseline (baselines/NAME)",
        epilog=save_example,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bl_sub = bl.add_subparsers(dest="action", required=True)
    bs = bl_sub.add_parser(
        "save",
        help="save results as baselines/NAME",
        epilog=save_example,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bs.add_argument("name")
    bs.add_argument("results", nargs="?", help="results.jsonl or run folder (default: the newest under reports/)")
    _baselines_option(bs)
    bs.set_defaults(func=commands.baseline)
    cp = sub.add_parser(
        "compare",
        help="compare results with a baseline; exit 1 on regressions",
        description="BASE and NEW: each a baseline name (under --baselines) or results (a results.jsonl or run "
        "folder). Exit 0 when no result is of a --fail-on class, 1 when one is, 2 for bad usage.",
        epilog=examples(
            "crossbn compare before reports/20261204-101500",
            "crossbn compare before after --fail-on regressed,removed --out reports/cmp",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cp.add_argument("base")
    cp.add_argument("new")
    _baselines_option(cp)
    cp.add_argument("--fail-on", metavar="CLASSES", help=BY_NAME["fail_on"].help + " (default: regressed)")
    cp.add_argument("--show", type=int, default=40, help="how many changed results to list (default: 40)")
    cp.add_argument("--out", help="also write DIR/comparison.json (`crossbn report DIR` then shows it)")
    cp.set_defaults(func=commands.compare)
    kn = sub.add_parser(
        "known",
        help="hold finished results against a known-differences file; exit 1 on new findings",
        description="Which findings of a run the file covers, which are new (grouped by backend, "
        "verdict, dtype, stage and fingerprint: what an entry is written for), and "
        "which entries match nothing.",
        epilog=examples("crossbn known frameworks reports/20261204-101500", "crossbn known my-known.toml"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kn.add_argument("file", help="the known-differences TOML file (a bare name: a built-in one, e.g. frameworks)")
    kn.add_argument("results", nargs="?", help="results.jsonl or run folder (default: the newest under reports/)")
    kn.set_defaults(func=commands.known)
    from crossbn.app.bisect_command import add_parser as add_bisect
    from crossbn.bugreport.command import add_parsers

    add_parsers(sub)
    add_bisect(sub)
    bk = sub.add_parser(
        "backends",
        help="list backends and whether they can run here",
        epilog=examples("crossbn backends", "crossbn backends --backend-module my_backend.py --markdown"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bk.add_argument("--backend-module", action="append", default=[], help=BY_NAME["backend_module"].help)
    bk.add_argument(
        "--markdown",
        action="store_true",
        help="print the table of devices and documented conventions that README.md holds",
    )
    bk.set_defaults(func=commands.backends)
    su = sub.add_parser(
        "suites",
        help="list case catalogues",
        epilog=examples("crossbn suites"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    su.set_defaults(func=commands.suites)
    ca = sub.add_parser(
        "cache",
        help="what crossbn's cache holds, or empty it",
        description="The judgements of unchanged outputs and the frameworks' compilation caches "
        "(JAX, Inductor) that `crossbn run` keeps; never needed for a right answer.",
        epilog=examples("crossbn cache info", "crossbn cache clear"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ca.add_argument("action", choices=("info", "clear"))
    ca.add_argument(
        "--cache",
        "--dir",
        dest="dir",
        metavar="DIR",
        help="the cache folder, as `crossbn run --cache` (env CROSSBN_CACHE; default: $XDG_CACHE_HOME/crossbn or "
        "~/.cache/crossbn)",
    )
    ca.set_defaults(func=commands.cache)
    co = sub.add_parser(
        "conventions",
        help="observe each backend's conventions from targeted runs",
        description="Momentum direction, running-variance correction, eps and momentum "
        "precision, eps floor, variance algorithm, float16/bfloat16 accumulators, "
        "one value per channel and eps=0 on a constant channel, read off targeted "
        "runs and set beside each backend's declaration; a difference is a finding.",
        epilog=examples("crossbn conventions --backends torch,flax-linen --out reports/conv --strict"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _backend_options(
        co,
        "conventions.jsonl",
        n_default="auto",
        n_help="backends observed at once, or auto (one per core)",
        timeout_of="probe",
        strict="exit 1 when an observation differs from a declaration",
    )
    co.set_defaults(func=commands.conventions)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    if getattr(args, "verbose", False):  # read by the plugin and every worker process (execution/quiet.py)
        os.environ["CROSSBN_VERBOSE"] = "1"
    try:
        if args.command == "run":
            return run_command(args, extra)
        return args.func(args)
    except BrokenPipeError:  # `crossbn backends | head`: the reader left; not an error of crossbn's
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
