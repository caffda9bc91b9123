"""`crossbn bugs [RESULTS]`: a run's findings grouped by root cause."""

from __future__ import annotations

import fnmatch
import sys


def run(args) -> int:
    """The findings of a run grouped by root cause (crossbn/bugreport/group.py),
    each with its count, worst ratio and smallest case, and the command that
    reruns that case."""
    from .. import environment
    from ..report.pages import rerun_command
    from ..report.sources import ReportError, newest_run, results_file
    from ..results import read
    from .group import group

    try:
        path = results_file(args.results or newest_run() or "reports")
        records = [r for r in read(path) if fnmatch.fnmatchcase(r.get("backend", ""), args.backend)]
    except (ReportError, ValueError) as e:
        print(f"crossbn bugs: {e}", file=sys.stderr)
        return 2
    groups = group(records)
    print(f"crossbn bugs: {sum(g.count for g in groups)} finding(s) in {path}, {len(groups)} root cause(s) "
          "(backend, device, verdict, first departing stage, fingerprint)")
    run_info = environment.read(path.parent)
    for n, g in enumerate(groups[:args.show], 1):
        worst = "" if g.worst_ratio is None else f", worst error/bound {g.worst_ratio:.3g}"
        print(f"{n:4d}. {g.count:5d} x {g.backend}/{g.device} {g.verdict}: {g.stage or '-'} | {g.fingerprint or '-'}"
              f"  [{', '.join(g.dtypes)}{worst}]")
        print(f"        smallest: {g.smallest.get('pytest_id') or g.smallest['case_id']}")
        print(f"        rerun:    {rerun_command(g.smallest, run_info)}")
    if len(groups) > args.show:
        print(f"  ... {len(groups) - args.show} more (--show N)")
    return 0
