"""crossbn's benchmarks: `python -m benchmarks [options]` from the project root.

Prints a Markdown table per section (the figures benchmarks/README.md holds),
each cell the median of --reps repetitions with the spread (min-max), under a
header describing the machine and the framework versions; the raw figures go
to --json. Sections (--sections, default all):

  overhead  crossbn on each backend against the bare loop of the same framework calls
  scaling   the suite with -n 1, -n 2, ... : speed-up and efficiency
  startup   time to first result per backend; once per run, per worker, per case
  scale     one case from 1e2 to 1e8 elements: inputs, backend, oracle, comparison, peak memory
  suite     the whole main job (`crossbn run --suite default -n 2`) and where its time goes
  rerun     the suite twice on one cache: the second run's wall against the first's; the
            first's diagnosis share and its report (size, render time, first paint)

Goals, checked here and never by timed assertions in the tests:
overhead within 1.25x overall, -n 2 at least 1.7x faster than -n 1, the oracle
under 15% of the suite's time, peak memory bounded by the largest case.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import common, goals, overhead, rerun, scale, scaling, startup, suite

SECTIONS = ("overhead", "scaling", "startup", "scale", "suite", "rerun")


def _list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    p.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (default 3)")
    p.add_argument("--suite", default="default", help="the suite measured (default: default)")
    p.add_argument(
        "--every",
        type=int,
        default=10,
        help="overhead and scaling run every K-th case of the suite (default 10; 1: all of it)",
    )
    p.add_argument("--backends", default="all", help="comma-separated, or all installed (default)")
    p.add_argument("--workers", default="1,2", help="the -n values of the scaling section (default 1,2)")
    p.add_argument(
        "--sizes",
        default="1e2,1e3,1e4,1e5,1e6,1e7",
        help="elements per case, scale section (default up to 1e7: 1e8 needs ~30 GB, see README)",
    )
    p.add_argument("--scale-backend", default="torch", help="the backend of the scale section (default torch)")
    p.add_argument("--suite-reps", type=int, default=1, help="repetitions of the whole-suite run (default 1: ~20 min)")
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write the raw figures here (default benchmarks/results/<date>-<time>.json)",
    )
    return p


def _jsonable(x):
    if isinstance(x, common.Spread):
        return x.to_dict()
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


def versions(backends: list[str]) -> list[str]:
    from crossbn.backends import discover, load

    specs = discover()
    seen = {}
    for b in backends:
        seen.update(load(specs[b]).versions())
    import numpy

    seen["numpy"] = numpy.__version__
    return [f"{k} {v}" for k, v in sorted(seen.items())]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sections = _list(args.sections)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser().error(f"--sections: unknown {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    if args.reps < 1 or args.suite_reps < 1 or args.every < 1:
        parser().error("--reps, --suite-reps and --every must be at least 1")
    installed = common.installed_cpu_backends()
    backends = installed if args.backends == "all" else _list(args.backends)
    missing = [b for b in backends if b not in installed]
    if missing:
        parser().error(f"--backends: not installed here: {', '.join(missing)}; installed: {', '.join(installed)}")
    try:
        workers = [int(n) for n in _list(args.workers)]
        sizes = [int(float(s)) for s in _list(args.sizes)]
    except ValueError as e:
        parser().error(f"--workers/--sizes: {e}")

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    m = common.machine()
    head = [
        f"Measured {m['date']} on {m['cpu']}, {m['memory']}, {m['platform']}, Python {m['python']}, "
        f"crossbn {m['crossbn_commit'][:10]}.",
        "",
        "Versions: " + ", ".join(versions(backends)) + ".",
        "",
    ]
    print("\n".join(head), flush=True)
    raw: dict = {"machine": m, "args": vars(args) | {"json": str(args.json)}}
    path = args.json or common.ROOT / "benchmarks" / "results" / time.strftime("%Y%m%d-%H%M%S.json")
    path.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every section: a later one failing loses nothing finished
        path.write_text(json.dumps(_jsonable(raw), indent=1) + "\n", encoding="utf-8")

    with common.scratch() as tmp:
        folder = Path(tmp)
        sample = common.sample_suite(args.suite, args.every, folder)
        sampled = f"every {args.every}th case of `{args.suite}`" if args.every > 1 else f"`{args.suite}`"
        plan = {
            "overhead": (
                f"Harness overhead ({sampled}, -n 0, {args.reps} reps)",
                overhead.table,
                lambda: overhead.measure(backends, sample, args.reps, folder, log),
            ),
            "scaling": (
                f"Parallel scaling ({sampled}, every backend, {args.reps} reps)",
                scaling.table,
                lambda: scaling.measure(backends, sample, args.reps, folder, workers, log),
            ),
            "startup": (
                f"Start-up ({args.reps} reps)",
                startup.table,
                lambda: startup.measure(backends, args.reps, folder, log),
            ),
            "scale": (
                f"Scale ({args.reps} reps, a fresh process per size)",
                scale.table,
                lambda: scale.measure(args.scale_backend, sizes, args.reps, log),
            ),
            "suite": (
                f"Whole suite (`{args.suite}`, {args.suite_reps} rep)",
                suite.table,
                lambda: suite.measure(backends, args.suite, args.suite_reps, folder, 2, log),
            ),
            "rerun": (
                f"First and second run (`{args.suite}`, -n 2, one cache)",
                rerun.table,
                lambda: rerun.measure(backends, args.suite, folder, 2, log),
            ),
        }
        for name in (s for s in SECTIONS if s in sections):
            title, table, measure = plan[name]
            try:
                raw[name] = measure()
                lines = table(raw[name])
            except Exception as e:  # noqa: BLE001 - one section failing is reported, the others still run
                raw.setdefault("failed", {})[name] = f"{type(e).__name__}: {e}"
                lines = [f"failed: {type(e).__name__}: {str(e)[:500]}"]
                log(f"{name} failed: {e}")
            print("\n".join([f"### {title}", "", *lines, ""]), flush=True)
            save()
    print("\n".join(["### Goals", "", *goals.table(raw), ""]))
    save()
    log(f"raw figures: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
