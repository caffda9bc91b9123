"""What each of `crossbn`'s smaller subcommands does, once cli.py has parsed its
arguments: report, baseline save, compare, known, backends, suites, cache and
conventions (`run` is run_command.py; bugs, repro and fuzz are bugreport's)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def cache(args: argparse.Namespace) -> int:
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


def baseline(args: argparse.Namespace) -> int:
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


def compare(args: argparse.Namespace) -> int:
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
    try:
        fails = parse_fail_on(args.fail_on)
    except BaselineError as e:
        print(f"crossbn compare: --fail-on {e}", file=sys.stderr)
        return 2
    try:  # every argument checked before either side is read
        find(args.base, root), find(args.new, root)
        if args.out:
            check_out_folder(args.out, "--out")
        rows = compare(load(args.base, root), load(args.new, root))
    except (BaselineError, FolderError) as e:
        print(f"crossbn compare: {e}", file=sys.stderr)
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


def known(args: argparse.Namespace) -> int:
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


def report(args: argparse.Namespace) -> int:
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


def backends(args: argparse.Namespace) -> int:
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


def suites(args: argparse.Namespace) -> int:
    from crossbn.spec.catalogue import CatalogueError, available_suites
    from crossbn.spec.suites import load_suite

    for name in available_suites():
        try:
            print(f"{name:10s} {len(load_suite(name)):5d} cases")
        except CatalogueError as e:
            print(f"{name:10s} ERROR: {e}")
    return 0


def conventions(args: argparse.Namespace) -> int:
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
