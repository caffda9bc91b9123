"""`crossbn bugs`, `crossbn repro` and `crossbn fuzz`: their options and what they do."""

from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

from crossbn.bugreport.helptext import examples, wrapped
from crossbn.execution.limits import seconds

DEFAULT_BUDGET = "2m"


def add_parsers(sub) -> None:
    bg = sub.add_parser(
        "bugs",
        help="a run's findings grouped by root cause, each with its smallest case",
        description=wrapped(
            "One line per root cause: findings that share backend, device and root cause "
            "(the fingerprint that explains them; the first departing stage where none does; "
            "crash/error/timeout: the exception), with their count, worst error/bound, smallest "
            "case, the command that reruns it and the `crossbn repro` command that writes its "
            "bug report. Exit 0; 2 for bad usage."
        ),
        epilog=examples("crossbn bugs reports/20261204-101500", "crossbn bugs --backend 'keras-*'"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bg.add_argument("results", nargs="?", help="results.jsonl or run folder (default: the newest under reports/)")
    bg.add_argument("--backend", default="*", help="only backends matching this glob")
    bg.add_argument("--show", type=int, default=30, help="how many groups to list (default: 30)")
    bg.set_defaults(func=bugs)
    rp = sub.add_parser(
        "repro",
        help="minimize a finding and write a verified repro.py and ISSUE.md",
        description=wrapped(
            "FINDING as crossbn prints it: CASE--BACKEND--DEVICE (the report's page "
            "name), a pytest id CASE-BACKEND-DEVICE or its node id, or the bare CASE that "
            "`crossbn bugs` lists (CASE: a case id, a prefix of one, or a pytest id). The case "
            "is shrunk with Hypothesis while the same finding (verdict, first departing stage) "
            "persists, its strongest public output at least min(the original's, 10) times past "
            "its bound; repro.py, which checks that output, is run in a fresh process, and only "
            "when it reproduces are repro.py, ISSUE.md, case.toml and finding.json written. "
            "Exit 0 when written, 1 when the finding does not reproduce, 2 for bad usage."
        ),
        epilog=examples(
            "crossbn repro smoke-f64-16x4-cf-t2e-f62bae26--keras-jax--cpu --results reports/20261204-101500",
            "crossbn repro smoke-f16-16x4-cf-t2e-43b27cf4-torch-cpu --budget 30s",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rp.add_argument("finding")
    rp.add_argument(
        "--results",
        help="the run the finding is from (default: the newest under reports/; "
        "otherwise the case is looked up in the suites)",
    )
    rp.add_argument("--suite", help="catalogue to find the case in when no run has it (default: every built-in suite)")
    rp.add_argument(
        "--budget",
        default=DEFAULT_BUDGET,
        help=f"time for shrinking, e.g. 90s, 10m; 0 writes the case unshrunk (default: {DEFAULT_BUDGET})",
    )
    rp.add_argument("--out", help="folder for <slug>/ (default: <run>/bug-reports, else bug-reports)")
    rp.add_argument("--known", metavar="FILE", help="known-differences file whose links ISSUE.md cites")
    rp.add_argument("--backend-module", action="append", default=[], help="a .py file with extra backends")
    rp.add_argument(
        "--interpreter",
        metavar="PYTHON",
        help="side by side: the other release's interpreter the finding ran under; a results file "
        "is data, so the interpreter it names is run only when given here too",
    )
    rp.add_argument(
        "--bisect",
        metavar="DIR",
        help="a `crossbn bisect` folder: its answer for this finding goes into the title and ISSUE.md "
        "(regression in X.Y.Z)",
    )
    rp.set_defaults(func=repro)
    from crossbn.bugreport.fuzz import add_parser

    add_parser(sub)


def bugs(args) -> int:
    """The findings of a run grouped by root cause (crossbn/bugreport/group.py),
    each with its count, worst ratio and smallest case, the command that
    reruns that case and the one that writes its bug report."""
    from crossbn.bugreport.group import group
    from crossbn.records import environment
    from crossbn.records.naming import repro_command, rerun_command
    from crossbn.records.results import read
    from crossbn.records.sources import ReportError, newest_run, results_file

    try:
        if args.show < 1:
            raise ValueError(f"--show {args.show}: must be at least 1")
        source = args.results or newest_run()
        if source is None:
            raise ReportError("no run under reports/ (name a run folder or results.jsonl)")
        path = results_file(source)
        records = [r for r in read(path) if fnmatch.fnmatchcase(r.get("backend", ""), args.backend)]
    except (ReportError, ValueError) as e:
        print(f"crossbn bugs: {e}", file=sys.stderr)
        return 2
    groups = group(records)
    print(
        f"crossbn bugs: {sum(g.count for g in groups)} finding(s) in {path}, {len(groups)} root cause(s) "
        "(backend, device, root cause; the first departing stage where no formulation explains it)"
    )
    run_info = environment.read(path.parent)
    for n, g in enumerate(groups[: args.show], 1):
        worst = "" if g.worst_ratio is None else f", worst error/bound {g.worst_ratio:.3g}"
        print(
            f"{n:4d}. {g.count:5d} x {g.backend}/{g.device} {'/'.join(g.verdicts)}: {g.stage or '-'} | "
            f"{g.fingerprint or '-'}"
            f"  [{', '.join(g.dtypes)}{worst}]"
        )
        for note in observed_notes(g, path.parent):
            print(f"        note:     {note}")
        print(f"        smallest: {g.smallest.get('pytest_id') or g.smallest['case_id']}")
        print(f"        rerun:    {rerun_command(g.smallest, run_info)}")
        print(f"        repro:    {repro_command(g.smallest, source, run_info)}")
    if len(groups) > args.show:
        print(f"  ... {len(groups) - args.show} more (--show N)")
    return 0


def observed_notes(g, run: Path) -> list[str]:
    """Where the run's observed conventions (conventions.jsonl) contradict the
    accumulator a group's fingerprint names: said beside it, so that the list
    never states as fact what the probes saw otherwise."""
    from crossbn.bugreport import observed

    seen = observed.read(run, g.backend, g.device)
    notes = []
    for dtype in g.dtypes:
        if not g.fingerprint or dtype not in ("float16", "bfloat16") or not seen.get(f"reduce_{dtype}"):
            continue
        mine = observed.accumulator(g.fingerprint, dtype)
        if seen[f"reduce_{dtype}"] in ("float32", dtype) and seen[f"reduce_{dtype}"] != mine:
            notes.append(
                f"the run's conventions observed {g.backend}/{g.device} accumulate {dtype} sums in "
                f"{seen[f'reduce_{dtype}']}, where this fingerprint has them in {mine}: short sums can fit "
                "either (`crossbn repro` says which explains its case)"
            )
    return notes


def backend_spec(record: dict | None, backend: str) -> str:
    """The --backends item that names this backend again (side by side: with its interpreter)."""
    if record and record.get("interpreter") and "@" in backend:
        return f"{backend.split('@', 1)[0]}@{backend.split('@', 1)[1]}={record['interpreter']}"
    return backend


def _trusted_interpreter(record: dict | None, given: str | None) -> None:
    """A results file may come from anywhere: the interpreter a record names
    (side by side) is a program crossbn would start, so it must be the one
    the user names with --interpreter."""
    named = (record or {}).get("interpreter")
    if not named:
        return
    if given is None or Path(given).resolve() != Path(named).resolve():
        raise ValueError(
            f"the finding ran under another interpreter, {named!r}; a results file does not "
            f"choose what crossbn runs: pass --interpreter {named} to run it there again"
        )


def repro(args) -> int:
    from crossbn.bugreport.attempt import Lab, LabError
    from crossbn.bugreport.finding import FindingError, locate
    from crossbn.bugreport.make import make
    from crossbn.bugreport.regression import answer_for
    from crossbn.records import known as known_mod
    from crossbn.records.folders import FolderError, check_out_folder
    from crossbn.records.naming import slug
    from crossbn.spec.catalogue import CatalogueError

    try:
        budget = seconds(args.budget)
        where = locate(args.finding, args.results, args.suite)
        known = known_mod.load(args.known) if args.known else []
        _trusted_interpreter(where.record, args.interpreter)
        out = Path(args.out) if args.out else (where.run / "bug-reports" if where.run else Path("bug-reports"))
        check_out_folder(out, "--out" if args.out else "the bug-reports folder")
        lab = Lab(backend_spec(where.record, where.backend), where.device, tuple(args.backend_module)).require()
        regression = answer_for(args.bisect, where.case.id, where.backend, where.device) if args.bisect else None
    except (FindingError, LabError, CatalogueError, known_mod.KnownError, FolderError, ValueError) as e:
        print(f"crossbn repro: {e}", file=sys.stderr)
        return 2
    name = slug(
        where.record
        or {
            "pytest_id": where.case.pytest_id,
            "case_id": where.case.id,
            "backend": where.backend,
            "device": where.device,
        }
    )
    print(
        f"crossbn repro: {where.case.pytest_id} on {where.backend}/{where.device}, shrinking for up to {budget:g} s",
        flush=True,
    )
    with lab:
        made = make(
            where.case,
            lab,
            out,
            budget,
            slug=name,
            known=known,
            original_name=where.case.pytest_id,
            run=where.run,
            regression=regression,
        )
    if made.minimized is not None:
        print(
            f"  minimized to {made.minimized.pytest_id} (shape {made.minimized.shape}, steps "
            f"{list(made.minimized.steps)}) after {made.tried} smaller case(s)"
        )
    print(f"crossbn repro: {made.status}: {made.message}")
    if made.status == "written" and where.run:
        print(f"  the report links it once rebuilt: crossbn report {where.run}")
    return 0 if made.status == "written" else 1
