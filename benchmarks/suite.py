"""The whole suite: wall time of `crossbn run --suite default -n 2` (the main
job, conventions included), and where it goes.

The phases come from the records' `timings` (judge.Clock), summed over the
run's records and divided by the number of workers, since two workers spend
them side by side; reporting is `crossbn report` of the same folder timed on
its own (the run builds the report twice: after the tests and after the
conventions); the conventions are the wall time of `crossbn conventions` on
its own. What no phase accounts for (pytest's start, collection, scheduling,
workers waiting for each other) is the rest.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from .common import PYTHON, ROOT, Spread, memory_of, records, run_crossbn


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def largest_alone(backends: list[str], suite, folder: Path, workers: int) -> dict:
    """Peak memory of the same run (backends, -n) on the suite's largest
    cases alone (the most elements): what its largest case needs. The whole
    suite should need no more (goals.py)."""
    import numpy as np

    from crossbn.bugreport.casefile import group_toml
    from crossbn.spec.suites import load_suite

    cases = load_suite(suite)
    most = max(int(np.prod(c.shape)) for c in cases)
    largest = [c for c in cases if int(np.prod(c.shape)) == most]
    path = folder / "largest.toml"
    path.write_text("\n".join(group_toml(c, c.group or "largest") for c in largest), encoding="utf-8")
    _, out = run_crossbn(path, ",".join(backends), workers, folder / "suite-largest")
    return {"elements": most, "cases": len(largest), **memory_of(out)}


def measure(backends: list[str], suite, reps: int, folder: Path, workers: int, log) -> dict:
    runs = []
    for rep in range(reps):
        out = folder / f"suite-{rep}"
        wall, _ = run_crossbn(suite, ",".join(backends), workers, out, conventions=True)
        recs = records(out)
        share = {p: 0.0 for p in ("start", "inputs", "backend", "oracle", "compare")}
        for r in recs:
            t = r.get("timings") or {}
            share["start"] += t.get("start", 0.0)
            share["inputs"] += t.get("inputs", 0.0)
            share["backend"] += t.get("backend", 0.0) + t.get("cross", 0.0)
            share["oracle"] += t.get("oracle", 0.0)
            share["compare"] += sum(t.get(p, 0.0) for p in ("compare", "localize", "diagnose", "record"))
        share = {k: v / workers for k, v in share.items()}
        report = _timed([PYTHON, "-m", "crossbn", "report", str(out), "--out", str(folder / f"suite-report-{rep}")])
        share["report"] = 2 * report
        share["conventions"] = _timed(
            [
                PYTHON,
                "-m",
                "crossbn",
                "conventions",
                "--backends",
                ",".join(backends),
                "--out",
                str(folder / f"suite-conv-{rep}"),
                "-n",
                str(workers),
            ]
        )
        share["rest"] = wall - sum(share.values())
        runs.append({"wall": wall, "records": len(recs), **share, **memory_of(out)})
        log(
            f"suite rep {rep + 1}/{reps}: {wall:.0f} s, {len(recs)} records, "
            + ", ".join(f"{k} {v:.0f} s" for k, v in share.items())
        )
    keys = [k for k in runs[0] if k != "records"]
    largest = largest_alone(backends, suite, folder, workers)
    log(
        f"suite's largest cases alone ({largest['cases']} of {largest['elements']} elements): "
        f"harness {largest['harness_mb']:.0f} MB, backend {largest['backend_mb']:.0f} MB"
    )
    return {
        "workers": workers,
        "records": runs[0]["records"],
        "largest": largest,
        **{k: Spread([r[k] for r in runs]) for k in keys},
    }


LABELS = {
    "start": "worker start and framework imports",
    "inputs": "input generation",
    "backend": "backends (worker round trips)",
    "oracle": "the oracle",
    "compare": "comparison, localization, diagnosis, records",
    "report": "the HTML report (twice)",
    "conventions": "conventions",
    "rest": "the rest: pytest, collection, scheduling, waiting",
}


def table(result: dict) -> list[str]:
    wall = result["wall"].median
    lines = [
        f"`crossbn run -n {result['workers']}`: {result['records']} results, wall {result['wall'].cell(0)} s; "
        f"peak memory: {result['harness_mb'].cell(0)} MB in the largest harness process (controller, xdist "
        f"workers), {result['backend_mb'].cell(0)} MB in the largest backend worker, "
        f"{result['total_mb'].cell(0)} MB all processes together. The same run on the suite's largest cases "
        f"alone ({result['largest']['cases']} of {result['largest']['elements']:,} elements): "
        f"{result['largest']['harness_mb']:.0f} MB harness, {result['largest']['backend_mb']:.0f} MB backend "
        f"worker, {result['largest']['total_mb']:.0f} MB together.",
        "",
        "| where | s | share |",
        "|---|---:|---:|",
    ]
    for k, label in LABELS.items():
        lines.append(f"| {label} | {result[k].cell(0)} | {result[k].median / wall:.0%} |")
    return lines
