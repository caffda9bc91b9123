"""`crossbn` as a user runs it: `python -m crossbn ARGS` in its own process."""

from __future__ import annotations

import os
import subprocess
import sys


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
