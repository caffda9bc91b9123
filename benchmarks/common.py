"""What every benchmark section shares: the machine, repetitions, statistics,
the suite (or a deterministic sample of it), and crossbn run as a process.

Each measurement is a whole process started afresh, as a user would start it,
so imports and worker start-up are paid where a real run pays them.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def machine() -> dict:
    """The machine the figures were measured on, as the table's header says it."""
    from crossbn.records import environment

    info = environment.describe(suite="", backends=[], devices=["cpu"], backend_modules=[], argv=[])
    mem = ""
    try:
        kb = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": info.get("cpu", ""),
        "cores": os.cpu_count(),
        "memory": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "crossbn_commit": info.get("commit", ""),
    }


@dataclass
class Spread:
    """Repetitions of one measurement: the table shows the median and the spread (min-max)."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def cell(self, digits: int = 1) -> str:
        if len(self.values) == 1:
            return f"{self.values[0]:.{digits}f}"
        return f"{self.median:.{digits}f} ({min(self.values):.{digits}f}-{max(self.values):.{digits}f})"

    def to_dict(self) -> dict:
        return {"median": self.median, "min": min(self.values), "max": max(self.values), "values": self.values}


def sample_suite(suite: str, every: int, folder: Path) -> Path | str:
    """The suite, or every `every`-th of its cases (in catalogue order, so the
    same sample each time) written as a catalogue that crossbn and the bare
    loop both read."""
    if every <= 1:
        return suite
    from crossbn.bugreport.casefile import group_toml
    from crossbn.spec.suites import load_suite

    cases = load_suite(suite)[::every]
    path = folder / f"{Path(str(suite)).stem}-every-{every}.toml"
    path.write_text("\n".join(group_toml(c, c.group or "sample") for c in cases), encoding="utf-8")
    return path


def run_crossbn(
    suite, backends: str, n: int | str, out: Path, *, conventions: bool = False, extra: tuple[str, ...] = ()
) -> tuple[float, Path]:
    """`crossbn run` as its own process: (wall seconds, the run's folder).
    Each run judges afresh (a cache folder of its own, empty) unless `extra`
    names a --cache: a measurement is of crossbn's work, not of a rerun."""
    if "--cache" not in extra:
        extra = (*extra, "--cache", str(out.parent / f"{out.name}-cache"))
        shutil.rmtree(out.parent / f"{out.name}-cache", ignore_errors=True)
    cmd = [
        PYTHON,
        "-m",
        "crossbn",
        "run",
        "--suite",
        str(suite),
        "--backends",
        backends,
        "-n",
        str(n),
        "--out",
        str(out),
        "--progress",
        "off",
        *extra,
    ]
    if not conventions:
        cmd.append("--no-conventions")
    from .memory import TreePeak

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = TreePeak(proc.pid, backend_depth=1 if str(n) == "0" else 2)
    output, _ = proc.communicate()
    seconds = time.perf_counter() - start
    memory = peak.stop()
    if proc.returncode not in (0, 1):  # 1: findings (no --known given), still a complete run
        raise RuntimeError(f"crossbn run failed ({proc.returncode}):\n{output[-3000:]}")
    # beside the run's results: the sections that report memory read it (memory_of)
    (out / "peak-memory.json").write_text(json.dumps(memory), encoding="utf-8")
    return seconds, out


def memory_of(out: Path) -> dict:
    """The peak memory run_crossbn sampled for the run in `out` (memory.py), in MB."""
    return json.loads((out / "peak-memory.json").read_text(encoding="utf-8"))


def records(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def scratch() -> tempfile.TemporaryDirectory:
    """A folder for one benchmark's runs, removed afterwards (runs write reports of megabytes)."""
    return tempfile.TemporaryDirectory(prefix="crossbn-bench-")


def installed_cpu_backends() -> list[str]:
    """Every registered backend whose framework is installed here (the main job's set)."""
    from crossbn.backends import discover, load

    return [name for name, spec in discover().items() if load(spec).available() is None]
