"""Parallel scaling: the same suite with `-n 1`, `-n 2`, ... (pytest-xdist
workers), as `crossbn run` processes; speed-up against `-n 1` and efficiency
(speed-up / workers)."""

from __future__ import annotations

from pathlib import Path

from .common import Spread, run_crossbn


def measure(backends: list[str], suite, reps: int, folder: Path, workers: list[int], log) -> dict:
    walls = {}
    for n in workers:
        values = []
        for rep in range(reps):
            wall, _ = run_crossbn(suite, ",".join(backends), n, folder / f"scaling-n{n}-{rep}")
            values.append(wall)
            log(f"scaling -n {n} rep {rep + 1}/{reps}: {wall:.1f} s")
        walls[n] = Spread(values)
    base = walls[workers[0]].median * workers[0]
    return {
        "walls": walls,
        "speedup": {n: base / walls[n].median for n in workers},
        "efficiency": {n: base / walls[n].median / n for n in workers},
    }


def table(result: dict) -> list[str]:
    lines = ["| -n | wall s | speed-up | efficiency |", "|---:|---:|---:|---:|"]
    for n, w in result["walls"].items():
        lines.append(f"| {n} | {w.cell()} | {result['speedup'][n]:.2f}x | {result['efficiency'][n]:.0%} |")
    return lines
