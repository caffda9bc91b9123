"""Run a `repro.py` the way a maintainer would: a fresh process, no crossbn.

The script runs under the backend's interpreter (the other environment, for
a backend side by side with another release), in isolated mode (`-I`: no
PYTHONPATH, no user site, not the current folder), from a folder outside the
project, so an accidental `import crossbn` would fail here rather than on the
maintainer's machine. Exit 1 is "reproduced", 0 is "not reproduced",
anything else is a broken script.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TIMEOUT = 600.0


@dataclass
class Verdict:
    status: str  # reproduced | not-reproduced | broken | timeout
    returncode: int | None
    output: str  # stdout and stderr together
    seconds: float

    @property
    def reproduced(self) -> bool:
        return self.status == "reproduced"

    @property
    def versions(self) -> str:
        """The script's first line: the framework and NumPy versions it ran with."""
        return (self.output.splitlines() or [""])[0]


def run(script: Path, interpreter: str | None = None, timeout: float = TIMEOUT) -> Verdict:
    import time

    python = interpreter or sys.executable
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [python, "-I", script.name], cwd=script.parent, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return Verdict("timeout", None, out + f"\n(no exit within {timeout:g} s)", time.perf_counter() - start)
    status = {0: "not-reproduced"}.get(done.returncode, "broken")
    if done.returncode == 1 and "DISCREPANCY:" in done.stdout:  # not a traceback's exit 1
        status = "reproduced"
    return Verdict(status, done.returncode, done.stdout + done.stderr, time.perf_counter() - start)
