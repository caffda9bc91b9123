"""The run's environment, kept beside its results as `run.json`.

The report's first question is "measured where, with what": the OS, the
CPU and GPU models, Python, crossbn's version and git commit, the suite and
options, and the run's wall time. The controller writes `run.json` when the
run starts (`complete: false`) and rewrites it when the run ends, so a
killed run is recognisable as incomplete. Each backend's version and device
name are in the result records themselves (a backend may run in another
interpreter), not here.

Fields (schema 1): schema, crossbn, commit, platform, python, cpu, gpus,
suite, backends, backend_modules (file names), devices, argv, started, finished, wall_seconds, exit_status,
complete.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SCHEMA = 1
RUN_FILE = "run.json"
_ROOT = Path(__file__).resolve().parents[2]  # the checkout, for its git commit


def _quiet(argv: list[str]) -> str:
    """A command's stdout, or "" when it is missing, fails or hangs."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[str]:
    """GPU names from nvidia-smi; none when it is absent (no framework is imported here)."""
    if shutil.which("nvidia-smi") is None:
        return []
    out = _quiet(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    return [", driver ".join(p.strip() for p in line.split(",", 1)) for line in out.splitlines() if line.strip()]


def crossbn_version() -> tuple[str, str]:
    """(package version, git commit with "-dirty" when the checkout has changes; "" outside git)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("crossbn")
    except PackageNotFoundError:
        v = "unknown"
    # only when crossbn itself is the checkout (not a venv inside someone else's repository)
    top = _quiet(["git", "-C", str(_ROOT), "rev-parse", "--show-toplevel"])
    commit = (
        _quiet(["git", "-C", str(_ROOT), "rev-parse", "--short=12", "HEAD"])
        if top and Path(top).resolve() == _ROOT
        else ""
    )
    if commit and _quiet(["git", "-C", str(_ROOT), "status", "--porcelain", "--untracked-files=no"]):
        commit += "-dirty"
    return v, commit


def describe(**run: object) -> dict:
    """The machine and crossbn, plus the run's own fields (`suite`, `backends`, ...)."""
    v, commit = crossbn_version()
    return {
        "schema": SCHEMA,
        "crossbn": v,
        "commit": commit,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": f"{cpu_model()} ({os.cpu_count() or 1} cores)",
        "gpus": gpus(),
        **run,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "finished": None,
        "wall_seconds": None,
        "exit_status": None,
        "complete": False,
    }


def write(out: Path, info: dict) -> None:
    """Write `out/run.json` whole (a temporary file renamed over it: never half a file)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / RUN_FILE)


def finish(out: Path, info: dict, *, started: float, exit_status: int, complete: bool) -> dict:
    info = {
        **info,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_seconds": round(time.monotonic() - started, 3),
        "exit_status": exit_status,
        "complete": complete,
    }
    write(out, info)
    return info


def read(out: Path) -> dict | None:
    """`out/run.json`, or None when there is none or it is not a JSON object."""
    try:
        info = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    # a partial or older file: the fields it lacks read as unknown
    blank: dict[str, Any] = {
        "crossbn": "",
        "commit": "",
        "platform": "",
        "python": "",
        "cpu": "",
        "gpus": [],
        "suite": "",
        "backends": [],
        "backend_modules": [],
        "devices": [],
        "started": None,
        "finished": None,
        "wall_seconds": None,
        "exit_status": None,
        "complete": False,
    }
    return {**blank, **info}
