"""Scale: the cost of one case as its tensor grows from 1e2 elements to 1e8,
split into input generation, the backend (the worker round trip), the oracle
and the comparison (with localization and diagnosis, should there be a
finding), and the peak memory of the crossbn process and of the worker.

Each size is a fresh process (`python -m benchmarks.scale BACKEND N`) so that
its peak resident memory is its own. The case: float32, channels-first
(N, 4, 5, 5), one training step with gradients and the evaluation step, the
`default` suite's most common shape of work.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

from .common import PYTHON, ROOT, Spread


def one(backend_name: str, elements: int) -> dict:
    import numpy as np

    from crossbn.backends import choose, discover, instantiate
    from crossbn.execution.runner import WorkerPool
    from crossbn.spec.case import Case
    from crossbn.verdict.judge import judge

    specs, backends = instantiate(choose(backend_name, discover()), discover())
    case = Case(suite="scale", group="scale", shape=(max(1, elements // 100), 4, 5, 5), dtype="float32")
    pool = WorkerPool(specs, backends)
    judge(Case(suite="scale", group="warm", shape=(2, 4, 5, 5)), backend_name, backends[backend_name], "cpu", pool)
    rec = judge(case, backend_name, backends[backend_name], "cpu", pool)
    pool.close()
    t = rec["timings"]
    return {
        "elements": int(np.prod(case.shape)),
        "verdict": rec["verdict"],
        "seconds": rec["seconds"],
        "inputs": t.get("inputs", 0.0),
        "backend": t.get("backend", 0.0),
        "oracle": t.get("oracle", 0.0),
        "compare": sum(t.get(p, 0.0) for p in ("compare", "localize", "diagnose", "record")),
        "peak_crossbn_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def measure(backend: str, sizes: list[int], reps: int, log) -> dict:
    rows = {}
    for n in sizes:
        runs = []
        for _ in range(reps):
            done = subprocess.run(
                [PYTHON, "-m", "benchmarks.scale", backend, str(n)], cwd=ROOT, capture_output=True, text=True
            )
            if done.returncode != 0:  # a row saying so; larger sizes would fail the same way
                why = "killed (SIGKILL: out of memory?)" if done.returncode == -9 else f"exit {done.returncode}"
                log(f"scale {backend} {n:.0e}: failed, {why}\n{done.stderr[-2000:]}")
                rows[n] = {"failed": why}
                return {"backend": backend, "rows": rows}
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        rows[n] = {k: Spread([r[k] for r in runs]) for k in runs[0] if k not in ("elements", "verdict")}
        rows[n]["verdict"] = runs[0]["verdict"]
        log(
            f"scale {backend} {n:.0e}: {rows[n]['seconds'].cell(3)} s, oracle {rows[n]['oracle'].cell(3)} s, "
            f"peak {rows[n]['peak_crossbn_mb'].median:.0f} MB + worker {rows[n]['peak_worker_mb'].median:.0f} MB"
        )
    return {"backend": backend, "rows": rows}


def table(result: dict) -> list[str]:
    lines = [
        f"Backend: {result['backend']}.",
        "",
        "| elements | verdict | case s | inputs s | backend s | oracle s | compare s | oracle share "
        "| ns per element | peak crossbn MB | peak worker MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, r in result["rows"].items():
        if "failed" in r:
            lines.append(f"| {float(n):.0e} | failed: {r['failed']} |" + " |" * 9)
            continue
        total = r["seconds"].median
        lines.append(
            f"| {n:.0e} | {r['verdict']} | {r['seconds'].cell(3)} | {r['inputs'].median:.3f} | "
            f"{r['backend'].median:.3f} | {r['oracle'].median:.3f} | {r['compare'].median:.3f} | "
            f"{r['oracle'].median / total:.0%} | {total / n * 1e9:.0f} | "
            f"{r['peak_crossbn_mb'].median:.0f} | {r['peak_worker_mb'].median:.0f} |"
        )
    return lines


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    print(json.dumps(one(sys.argv[1], int(float(sys.argv[2])))))
