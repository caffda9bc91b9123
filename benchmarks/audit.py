"""The grouped diagnosis held to the per-finding one, on a finished run made
with `crossbn run --diagnosis audit` (every confirmed finding also searched
on its own):

    python -m benchmarks.audit reports/<run>

prints how many findings were searched in full, how many confirmed, how
many of those the own search agrees with (formulation and stage), and
every difference with its reason (crossbn/root_causes.audit), counted by
backend and reason, then listed one by one with --list.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from crossbn.records.results import read
from crossbn.verdict.root_causes import audit


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.audit", description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a run folder or its results.jsonl")
    p.add_argument("--list", action="store_true", help="every difference, one line each")
    args = p.parse_args(argv)
    path = args.run / "results.jsonl" if args.run.is_dir() else args.run
    if not path.is_file():
        print(f"python -m benchmarks.audit: {path}: no such results file", file=sys.stderr)
        return 2
    out = audit(read(path))
    diffs = out["differences"]
    print(
        f"{out['findings']} findings diagnosed: {out['own']} searched in full, {out['confirmed']} confirmed "
        f"against a representative; of these {out['equal']} equal to their own search (formulation and "
        f"stage), {len(diffs)} different.\n"
    )
    if diffs:
        print("| backend | differences | reason |\n|---|---:|---|")
        for (backend, kind), n in sorted(
            Counter((d["backend"], "; ".join(d["kinds"])) for d in diffs).items(), key=lambda kv: (-kv[1], kv[0])
        ):
            print(f"| {backend} | {n} | {kind} |")
    if args.list:
        print()
        for d in diffs:
            print(f"{d['backend']} {d['case']} (representative {d['representative']}): {d['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
