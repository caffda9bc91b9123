"""The `crossbn` command: `main(argv)` parses the arguments (`build_parser`) and runs one subcommand.

  run          run a suite (pytest underneath, pytest-xdist for -n) into a run folder (run_command.py)
  backends     list backends, their versions and availability      suites       list the case catalogues
  baseline     save results as a baseline                            compare      classify results against one
  known        which findings a known-differences file covers        bugs         findings grouped by root cause
  repro        shrink a finding into repro.py and ISSUE.md           fuzz         search for findings (Hypothesis)
  report       render results into HTML                              cache        show or clear crossbn's cache
  conventions  observe each backend's conventions

Exit status of `run`: 0 when the run completed and its results were written, whatever they say (findings are the
product, not an error); 1 with --strict when a result is a deviation, nan-mismatch, crash or timeout, or with
--compare when one regressed; 2 for bad usage; 3 for an internal error; 130 when interrupted (Ctrl-C, SIGTERM).

Full synopsis and design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from crossbn.app.options import BY_NAME, OPTIONS, Option
from crossbn.app.run_command import run as run_command
from crossbn.bugreport.helptext import examples  # every subcommand's help ends with examples


def _cache(args: argparse.Namespace) -> int:
    from crossbn.records import cache

    root = cache.resolve(args.dir or os.environ.get("CROSSBN_CACHE"))
    if root is None:
        print("crossbn cache: the cache is off (CROSSBN_CACHE); give --dir", file=sys.stderr)
        return 2
    if root.exists() and not root.is_dir():
        print(f"crossbn cache: --cache {root}: is a file, not a folder", file=sys.stderr)
        return 2
    if args.action == "clear":
        cache.clear(root)
        print(f"crossbn cache: cleared {root}")
        return 0
    rows = cache.info(root)
    print(f"crossbn cache: {root}")
    for part, files, size in rows:
        print(f"  {part:<11} {files:>7} files {size / 2**20:>9.1f} MB")
    print(f"  {'total':<11} {sum(r[1] for r in rows):>7} files {sum(r[2] for r in rows) / 2**20:>9.1f} MB")
    return 0


def _baseline(args: argparse.Namespace) -> int:
    from crossbn.records.folders import FolderError, check_out_folder
    from crossbn.records.sources import newest_run
    from crossbn.upgrade.baseline import BaselineError, save

    results = args.results or newest_run()
    if results is None:
        print("crossbn baseline: no results given and none under reports/", file=sys.stderr)
        return 2
    try:
        check_out_folder(Path(args.baselines) / args.name, "--baselines")
        folder = save(args.name, results, Path(args.baselines))
    except (BaselineError, FolderError) as e:
        print(f"crossbn baseline: {e}", file=sys.stderr)
        return 2
    print(f"crossbn baseline: {results} saved as {folder}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from collections import Counter

    from crossbn.records.folders import FolderError, check_out_folder
    from crossbn.upgrade.baseline import (
        CLASSES,
        MEANING,
        REGRESSION_FACTOR,
        BaselineError,
        compare,
        describe,
        find,
        load,
        parse_fail_on,
    )

    root = Path(args.baselines)
    try:  # every argument checked before either side is read
        fails = parse_fail_on(args.fail_on)
        find(args.base, root), find(args.new, root)
        if args.out:
            check_out_folder(args.out, "--out")
        rows = compare(load(args.base, root), load(args.new, root))
    except (BaselineError, FolderError) as e:
        print(f"crossbn compare: {str(e).replace('fail-on ', '--fail-on ', 1)}", file=sys.stderr)
        return 2
    counts = Counter(r["class"] for r in rows)
    if args.out:
        from crossbn.upgrade.baseline import write_comparison

        write_comparison(rows, Path(args.out), args.base, args.new, fails)
    print(
        f"crossbn compare: {args.base} -> {args.new}, {len(rows)} results "
        f"(regressed: a new finding, or error/bound grown > {REGRESSION_FACTOR:g}x; "
        f"failing: {', '.join(sorted(fails))})"
    )
    for c in CLASSES:
        if counts[c]:
            print(f"  {c:10s} {counts[c]:6d}  {MEANING[c]}")
    shown = [r for r in rows if r["class"] not in ("unchanged",)]
    for r in shown[: args.show]:
        print("  " + describe(r))
    if len(shown) > args.show:
        print(f"  ... {len(shown) - args.show} more (--show N)")
    return 1 if any(counts[c] for c in fails) else 0


def _known(args: argparse.Namespace) -> int:
    """Finished results against a known-differences file: what it covers,
    what is new (grouped the way an entry would be written), what it no
    longer matches. Exit 1 when a finding is new."""
    from collections import Counter

    from crossbn.records.known import KnownError, check, group_key, load
    from crossbn.records.results import read
    from crossbn.records.sources import ReportError, newest_run, results_file

    try:
        entries = load(args.file)
        path = results_file(args.results or newest_run() or "reports")
        used, new = check(entries, read(path))
    except (KnownError, ReportError, ValueError) as e:
        print(f"crossbn known: {e}", file=sys.stderr)
        return 2
    print(f"crossbn known: {args.file} against {path}: {sum(used.values())} known finding(s), {len(new)} new")
    for k in entries:
        print(f"  {used.get(k.index, 0):6d}  {k.label()}" + ("" if used.get(k.index) else "  -- matched nothing"))
    groups = Counter(group_key(r) for r in new)
    if groups:
        print("new findings (backend, verdict, dtype, first departing stage, fingerprint):")
        for (backend, verdict, dtype, stage, formulation), n in groups.most_common():
            example = next(r["pytest_id"] for r in new if group_key(r) == (backend, verdict, dtype, stage, formulation))
            print(f"  {n:6d}  {backend} {verdict} {dtype} | {stage or '-'} | {formulation or '-'}  e.g. {example}")
    return 1 if new else 0


def _report(args: argparse.Namespace) -> int:
    from crossbn.report import ReportError, build

    if args.out is None and len(args.results) != 1:
        print("crossbn report: --out is needed with more than one results source", file=sys.stderr)
        return 2
    from crossbn.records.folders import FolderError, check_out_folder

    out = Path(args.out) if args.out else Path(args.results[0])
    if out.suffix == ".jsonl":  # `crossbn report DIR/results.jsonl`: the report goes beside it
        out = out.parent
    try:
        check_out_folder(out, "--out" if args.out else "the report folder")
        index = build(args.results, out, title=args.title, pairs=args.pair)
    except (ReportError, FolderError) as e:
        print(f"crossbn report: {e}", file=sys.stderr)
        return 2
    print(f"crossbn report: {index}")
    return 0


def _backends(args: argparse.Namespace) -> int:
    from crossbn.backends import BackendError, discover, load

    try:
        specs = discover(tuple(args.backend_module))
        if args.markdown:
            from crossbn.backends.table import markdown

            print(markdown(tuple(args.backend_module)))
            return 0
    except BackendError as e:
        print(f"crossbn: {e}", file=sys.stderr)
        return 2
    rows = []
    for name, spec in specs.items():
        try:
            b = load(spec)
        except BackendError as e:
            rows.append((name, f"broken: {e}", "", ""))
            continue
        why = b.available()
        versions = ", ".join(f"{k} {v}" for k, v in b.versions().items())
        rows.append((name, f"unavailable: {why}" if why else "available", versions, str(spec)))
    # columns as wide as their longest entry (backend names come from --backend-module too)
    width = [max(len(r[i]) for r in rows) for i in range(3)] if rows else [0, 0, 0]
    for name, status, versions, spec in rows:
        line = f"{name:{width[0]}}  {status:{width[1]}}  {versions:{width[2]}}"
        print(f"{line}  [{spec}]" if spec else line.rstrip())
    return 0


def _suites(args: argparse.Namespace) -> int:
    from crossbn.spec.catalogue import CatalogueError, available_suites
    from crossbn.spec.suites import load_suite

    for name in available_suites():
        try:
            print(f"{name:10s} {len(load_suite(name)):5d} cases")
        except CatalogueError as e:
            print(f"{name:10s} ERROR: {e}")
    return 0


def _conventions(args: argparse.Namespace) -> int:
    from crossbn.conventions.command import run
    from crossbn.records.folders import FolderError, check_out_folder

    out = args.out or os.environ.get("CROSSBN_OUT")
    if out:
        try:
            check_out_folder(out, "--out")
        except FolderError as e:
            print(f"crossbn conventions: {e}", file=sys.stderr)
            return 2
    return run(args)


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
    rp.set_defaults(func=_report)
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
    bs.set_defaults(func=_baseline)
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
    cp.set_defaults(func=_compare)
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
    kn.set_defaults(func=_known)
    from crossbn.bugreport.command import add_parsers

    add_parsers(sub)
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
    bk.set_defaults(func=_backends)
    su = sub.add_parser(
        "suites",
        help="list case catalogues",
        epilog=examples("crossbn suites"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    su.set_defaults(func=_suites)
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
    ca.set_defaults(func=_cache)
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
    co.set_defaults(func=_conventions)
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
    if args.command == "run":
        return run_command(args, extra)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
