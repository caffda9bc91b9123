"""crossbn's sources pass the lint configured in pyproject.toml
([tool.ruff]: pycodestyle, pyflakes, import order, pyupgrade)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def test_ruff_finds_nothing():
    try:
        import ruff  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("ruff must run in CI (the test extra installs it)")
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
