"""Start-up: time to the first result per backend, and what is paid once per
worker against once per case.

Time to first result: `crossbn run -n 0` of a one-case suite (the smoke
suite's first case), as a process. Of it, `timings.start` of the record is
the backend's worker process starting and importing its framework (paid
once per worker); the rest of the record is the case itself; what is left of
the wall time is pytest, crossbn and the report (paid once per run). The
cost per case afterwards is the median record time over the smoke suite,
with the worker warm.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from .common import Spread, records, run_crossbn


def _one_case(folder: Path) -> Path:
    from crossbn.bugreport.casefile import group_toml
    from crossbn.spec.suites import load_suite

    path = folder / "first-case.toml"
    path.write_text(group_toml(load_suite("smoke")[0], "first"), encoding="utf-8")
    return path


def measure(backends: list[str], reps: int, folder: Path, log) -> dict:
    one = _one_case(folder)
    rows = {}
    for b in backends:
        first, start, case, per_case = [], [], [], []
        for rep in range(reps):
            wall, out = run_crossbn(one, b, 0, folder / f"startup-{b}-{rep}")
            (rec,) = records(out)
            first.append(wall)
            start.append(rec["timings"].get("start", 0.0))
            case.append(rec["seconds"] - start[-1])
        _, out = run_crossbn("smoke", b, 0, folder / f"startup-smoke-{b}")
        warm = [
            r["seconds"] - (r.get("timings") or {}).get("start", 0.0)
            for r in records(out)
            if r["verdict"] != "unsupported"
        ]
        per_case = statistics.median(warm) if warm else float("nan")
        rows[b] = {
            "first": Spread(first),
            "start": Spread(start),
            "case": Spread(case),
            "run": Spread([f - s - c for f, s, c in zip(first, start, case)]),
            "per_case": per_case,
        }
        log(f"startup {b}: first result {rows[b]['first'].cell()} s, worker {rows[b]['start'].cell()} s")
    return {"rows": rows}


def table(result: dict) -> list[str]:
    lines = [
        "| backend | first result s | once per run (pytest, crossbn, report) s | once per worker (start, import) s "
        "| first case s | each later case s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for b, r in result["rows"].items():
        lines.append(
            f"| {b} | {r['first'].cell()} | {r['run'].cell()} | {r['start'].cell()} | {r['case'].cell(2)} | "
            f"{r['per_case']:.3f} |"
        )
    return lines
