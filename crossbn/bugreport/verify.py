"""Run a `repro.py` the way a maintainer would: a fresh process, no crossbn.

The script runs under the backend's interpreter (the other environment, for
a backend side by side with another release), in isolated mode (`-I`: no
PYTHONPATH, no user site, not the current folder), from a folder outside the
project, so an accidental `import crossbn` would fail here rather than on the
maintainer's machine. Exit 1 is "reproduced", 0 is "not reproduced",
anything else is a broken script. `shown` is the output as ISSUE.md quotes it: without the
frameworks' log lines and with neutral paths for the temporary folder and the interpreter.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from crossbn.execution.quiet import is_noise

TIMEOUT = 600.0


@dataclass
class Verdict:
    status: str  # reproduced | not-reproduced | broken | timeout
    returncode: int | None
    output: str  # stdout and stderr together
    seconds: float
    shown: str = ""  # the output as a maintainer would see it (`shown`)

    @property
    def reproduced(self) -> bool:
        return self.status == "reproduced"

    @property
    def versions(self) -> str:
        """The script's first line: the framework and NumPy versions it ran with."""
        return (self.output.splitlines() or [""])[0]


# an interpreter's own files, wherever it is installed: /root/.pyenv/versions/3.11.7/lib/python3.11/copyreg.py
_INTERPRETER = re.compile(r"(?:[A-Za-z]:)?[/\\][^\s\"':]*?[/\\](lib[/\\]python\d+\.\d+[/\\])")


def shown(output: str, folder: Path) -> str:
    """`output` as ISSUE.md quotes it: the frameworks' log lines (quiet.NOISE) dropped, the
    temporary folder the script ran in and the interpreter's prefix written as a maintainer
    would see them (`repro.py`, `python/lib/...`)."""
    lines = [line for line in output.splitlines() if not is_noise(line)]
    text = "\n".join(lines)
    for path in dict.fromkeys((str(folder), str(Path(folder).resolve()))):  # as given, and as the OS resolves it
        text = text.replace(f"{path}/", "").replace(path, ".")
    return _INTERPRETER.sub(lambda m: "python/" + m.group(1).replace("\\", "/"), text)


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
        out += f"\n(no exit within {timeout:g} s)"
        return Verdict("timeout", None, out, time.perf_counter() - start, shown(out, script.parent))
    status = {0: "not-reproduced"}.get(done.returncode, "broken")
    if done.returncode == 1 and "DISCREPANCY:" in done.stdout:  # not a traceback's exit 1
        status = "reproduced"
    out = done.stdout + done.stderr
    return Verdict(status, done.returncode, out, time.perf_counter() - start, shown(out, script.parent))
