"""How a result is named outside its record: the file name of its page and
bug-report folder, and the one command line that reruns it."""

from __future__ import annotations

import hashlib
import re
import shlex
from pathlib import Path


def slug(rec: dict) -> str:
    """A file name for a result's page: its test id, safe on every file system
    (a long one cut, with a hash of the whole so that two never collide)."""
    raw = f"{rec.get('pytest_id') or rec['case_id']}--{rec['backend']}--{rec['device']}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", raw)
    if len(safe) <= 180:
        return safe
    return f"{safe[:160]}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"


def suite_name(suite: str) -> str:
    """A catalogue name as given; a catalogue file by its file name alone (the
    report names no absolute path: it is moved and attached elsewhere)."""
    return Path(suite).name if ("/" in suite or suite.endswith(".toml")) else suite


def rerun_command(rec: dict, run: dict | None) -> str:
    """One line that reruns just this (case, backend, device)."""
    suite = suite_name((run or {}).get("suite") or rec.get("suite") or "default")
    modules = "".join(f"--backend-module {shlex.quote(m)} " for m in (run or {}).get("backend_modules") or ())
    backend = rec["backend"]
    if rec.get("interpreter"):  # side by side: the release under its own interpreter, by the same name
        backend = f"{backend}={rec['interpreter']}"
    return (
        f"crossbn run --suite {shlex.quote(str(suite))} {modules}--backends {shlex.quote(backend)} "
        f"--devices {shlex.quote(rec['device'])} -n 0 --no-conventions "
        f"-- -k {shlex.quote(rec.get('pytest_id') or rec['case_id'])}"
    )


def repro_command(rec: dict, results: str | Path | None = None, run: dict | None = None) -> str:
    """The `crossbn repro` line that turns this finding into a verified bug report
    (`results`: the run folder it is from, as the user would type it; `run`:
    that run's run.json, whose backend modules the line names again)."""
    finding = f"{rec.get('pytest_id') or rec['case_id']}--{rec['backend']}--{rec['device']}"
    line = f"crossbn repro {shlex.quote(finding)}"
    if results is not None:
        line += f" --results {shlex.quote(str(results))}"
    line += "".join(f" --backend-module {shlex.quote(m)}" for m in (run or {}).get("backend_modules") or ())
    if rec.get("interpreter"):
        line += f" --interpreter {shlex.quote(rec['interpreter'])}"
    return line
