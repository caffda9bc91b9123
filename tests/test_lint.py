"""crossbn's sources pass the lint and the formatting configured in
pyproject.toml ([tool.ruff]: pycodestyle, pyflakes, import order, pyupgrade;
`ruff format`)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess:
    try:
        import ruff  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("ruff must run in CI (the test extra installs it)")
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--no-cache", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_ruff_finds_nothing():
    proc = _ruff("check", "--output-format", "concise")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_sources_are_formatted():
    proc = _ruff("format", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr + "\n(run: ruff format)"
