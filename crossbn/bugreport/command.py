"""`crossbn bugs`, `crossbn repro` and `crossbn fuzz`: their options and what they do."""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

from crossbn.execution.limits import seconds

DEFAULT_BUDGET = "2m"


def add_parsers(sub) -> None:
    bg = sub.add_parser(
        "bugs",
        help="a run's findings grouped by root cause, each with its smallest case",
        description="One line per root cause: findings that share backend, device, first "
        "departing stage and fingerprint (crash/error/timeout: the exception), "
        "with their count, worst error/bound, smallest case and its rerun command.",
    )
    bg.add_argument("results", nargs="?", help="results.jsonl or run folder (default: the newest under reports/)")
    bg.add_argument("--backend", default="*", help="only backends matching this glob")
    bg.add_argument("--show", type=int, default=30, help="how many groups to list (default: 30)")
    bg.set_defaults(func=bugs)
    rp = sub.add_parser(
        "repro",
        help="minimize a finding and write a verified repro.py and ISSUE.md",
        description="FINDING is CASE--BACKEND--DEVICE as the report names its finding pages "
        "(CASE: a case id or pytest id). The case is shrunk with Hypothesis while "
        "the same finding (verdict, first departing stage) persists, repro.py is "
        "run in a fresh process, and only when it reproduces are repro.py, "
        "ISSUE.md, case.toml and finding.json written. Exit 0 when written, 1 when "
        "the finding does not reproduce, 2 for bad usage.",
    )
    rp.add_argument("finding")
    rp.add_argument(
        "--results",
        help="the run the finding is from (default: the newest under reports/; "
        "otherwise the case is looked up in --suite)",
    )
    rp.add_argument("--suite", default="default", help="catalogue to find the case in (default: default)")
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
    rp.set_defaults(func=repro)
    from crossbn.bugreport.fuzz import add_parser

    add_parser(sub)


def bugs(args) -> int:
    """The findings of a run grouped by root cause (crossbn/bugreport/group.py),
    each with its count, worst ratio and smallest case, and the command that
    reruns that case."""
    from crossbn.bugreport.group import group
    from crossbn.records import environment
    from crossbn.records.naming import rerun_command
    from crossbn.records.results import read
    from crossbn.records.sources import ReportError, newest_run, results_file

    try:
        path = results_file(args.results or newest_run() or "reports")
        records = [r for r in read(path) if fnmatch.fnmatchcase(r.get("backend", ""), args.backend)]
    except (ReportError, ValueError) as e:
        print(f"crossbn bugs: {e}", file=sys.stderr)
        return 2
    groups = group(records)
    print(
        f"crossbn bugs: {sum(g.count for g in groups)} finding(s) in {path}, {len(groups)} root cause(s) "
        "(backend, device, first departing stage, fingerprint)"
    )
    run_info = environment.read(path.parent)
    for n, g in enumerate(groups[: args.show], 1):
        worst = "" if g.worst_ratio is None else f", worst error/bound {g.worst_ratio:.3g}"
        print(
            f"{n:4d}. {g.count:5d} x {g.backend}/{g.device} {'/'.join(g.verdicts)}: {g.stage or '-'} | "
            f"{g.fingerprint or '-'}"
            f"  [{', '.join(g.dtypes)}{worst}]"
        )
        print(f"        smallest: {g.smallest.get('pytest_id') or g.smallest['case_id']}")
        print(f"        rerun:    {rerun_command(g.smallest, run_info)}")
    if len(groups) > args.show:
        print(f"  ... {len(groups) - args.show} more (--show N)")
    return 0


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
    from crossbn.records import known as known_mod
    from crossbn.records.naming import slug
    from crossbn.spec.catalogue import CatalogueError

    try:
        budget = seconds(args.budget)
        where = locate(args.finding, args.results, args.suite)
        known = known_mod.load(args.known) if args.known else []
        _trusted_interpreter(where.record, args.interpreter)
        lab = Lab(backend_spec(where.record, where.backend), where.device, tuple(args.backend_module))
    except (FindingError, LabError, CatalogueError, known_mod.KnownError, ValueError) as e:
        print(f"crossbn repro: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else (where.run / "bug-reports" if where.run else Path("bug-reports"))
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
        made = make(where.case, lab, out, budget, slug=name, known=known, original_name=where.case.pytest_id)
    if made.minimized is not None:
        print(
            f"  minimized to {made.minimized.pytest_id} (shape {made.minimized.shape}, steps "
            f"{list(made.minimized.steps)}) after {made.tried} smaller case(s)"
        )
    print(f"crossbn repro: {made.status}: {made.message}")
    if made.status == "written" and where.run:
        print(f"  the report links it once rebuilt: crossbn report {where.run}")
    return 0 if made.status == "written" else 1
