"""Harness overhead: crossbn on a backend against the bare loop of the same
framework calls (bare_loop.py), per backend and overall.

crossbn's figure is the wall time of `crossbn run -n 0 --backends B` as its
own process (pytest, one worker process for the backend, the oracle, the
comparison, localization of findings, records and the report); the bare
loop's is its framework import plus its loop, in its own process too.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .common import PYTHON, ROOT, Spread, records, run_crossbn

# crossbn's time on one backend, by phase (judge.Clock), from the run's records
PHASES = ("start", "inputs", "backend", "oracle", "compare", "localize", "diagnose", "cross", "record")


def bare(backend: str, suite) -> dict:
    """The bare loop in a process of its own, its compilation caches as cold
    as crossbn's measured run has them (run_crossbn gives each run an empty
    cache): torch.compile's Inductor cache in a fresh folder, not the warm
    one of the system's temporary folder."""
    import tempfile

    from crossbn.backends import discover, load

    with tempfile.TemporaryDirectory(prefix="crossbn-bare-") as cold:
        env = {**os.environ, **load(discover()[backend]).worker_env, "TORCHINDUCTOR_CACHE_DIR": cold}
        return _bare(backend, suite, env)


def _bare(backend: str, suite, env: dict) -> dict:
    done = subprocess.run(
        [PYTHON, str(ROOT / "benchmarks" / "bare_loop.py"), backend, str(suite)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bare loop on {backend} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def phases(recs: list[dict]) -> dict[str, float]:
    total = {p: 0.0 for p in PHASES}
    for r in recs:
        for p, s in (r.get("timings") or {}).items():
            total[p] = total.get(p, 0.0) + s
    return total


def measure(backends: list[str], suite, reps: int, folder: Path, log) -> dict:
    rows = {}
    for b in backends:
        walls, floors, parts, n = [], [], [], 0
        for rep in range(reps):
            wall, out = run_crossbn(suite, b, 0, folder / f"overhead-{b}-{rep}")
            recs = records(out)
            floor = bare(b, suite)
            walls.append(wall)
            floors.append(floor["import_s"] + floor["loop_s"])
            parts.append(phases(recs))
            n = floor["cases"]
            log(
                f"overhead {b} rep {rep + 1}/{reps}: crossbn {wall:.1f} s, bare {floors[-1]:.1f} s "
                f"({floor['cases']} calls, import {floor['import_s']:.1f} s)"
            )
        median_parts = {p: Spread([x[p] for x in parts]).median for p in parts[0]}
        rows[b] = {
            "crossbn": Spread(walls),
            "bare": Spread(floors),
            "ratio": Spread([w / f for w, f in zip(walls, floors)]),
            "calls": n,
            "phases": median_parts,
        }
    total_c = Spread([sum(rows[b]["crossbn"].values[i] for b in rows) for i in range(reps)])
    total_b = Spread([sum(rows[b]["bare"].values[i] for b in rows) for i in range(reps)])
    return {
        "rows": rows,
        "total": {
            "crossbn": total_c,
            "bare": total_b,
            "ratio": Spread([c / f for c, f in zip(total_c.values, total_b.values)]),
        },
    }


def table(result: dict) -> list[str]:
    lines = [
        "| backend | calls | crossbn s | bare loop s | ratio | backend calls s | oracle s | localize+diagnose s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b, r in result["rows"].items():
        p = r["phases"]
        lines.append(
            f"| {b} | {r['calls']} | {r['crossbn'].cell()} | {r['bare'].cell()} | {r['ratio'].cell(2)} | "
            f"{p['backend']:.1f} | {p['oracle']:.1f} | {p['localize'] + p['diagnose']:.1f} |"
        )
    t = result["total"]
    lines.append(f"| **all** | | {t['crossbn'].cell()} | {t['bare'].cell()} | **{t['ratio'].cell(2)}** | | | |")
    return lines
