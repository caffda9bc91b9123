"""Describing the machine a worker runs on (no framework imports)."""

from __future__ import annotations

import platform


def cpu_name() -> str:
    """The CPU model as the OS reports it, e.g. 'AMD EPYC 7B13 (x86_64)'."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()
