"""`crossbn` as a user runs it: `python -m crossbn ARGS` in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def crossbn(*args: str, timeout: float = 600, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """The command's exit status and output (text); `env` adds to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "crossbn", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


NUMPY = str(Path(__file__).parent / "backends" / "numpy_variants.py")
# a run on the numpy test backends (no framework imported): a few cases take seconds
RUN = ("run", "--suite", "smoke", "--backend-module", NUMPY, "-n", "0", "--no-conventions", "--progress", "off")


def one_line_exit_2(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """A usage error as promised: exit 2, one line on stderr naming what is wrong, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]
