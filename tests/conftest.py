"""Fixtures shared by crossbn's own tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from chromium_page import chromium

# Each test's crossbn runs judge afresh: a judgement cached by an earlier
# test (or by the user's own runs) would hide what the test is about. The
# cache's own tests turn it on for their runs (tests/test_cache.py).
os.environ.setdefault("CROSSBN_CACHE", "off")

# fixture -> the marker every test that uses it carries (registered in pyproject.toml)
_MARKED_BY_FIXTURE = {"browser": "browser", "releases": "network"}


def pytest_collection_modifyitems(items):
    """`-m "not browser"` and `-m "not network"` select by what a test needs, not by where it lives."""
    for item in items:
        for fixture, marker in _MARKED_BY_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


@pytest.fixture(scope="module")
def browser():
    exe = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if exe is None or sync_playwright is None:
        why = "no chromium on PATH (tools/install-chromium installs it)" if exe is None else "playwright missing"
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {why}")
        pytest.skip(why)
    with sync_playwright() as p:
        # the flags keep Chromium off the network this machine does not have
        b = p.chromium.launch(
            executable_path=exe,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield b
        b.close()


@pytest.fixture(scope="session")
def built_once(tmp_path_factory, request) -> Callable[[str, Callable[[Path], None]], Path]:
    """built_once(name, build): the folder `name`, filled by `build` once per
    test session (see _built_once)."""
    distributed = hasattr(request.config, "workerinput")  # an xdist worker's
    return lambda name, build: _built_once(tmp_path_factory, distributed, name, build)


def _built_once(tmp_path_factory, distributed: bool, name: str, build: Callable[[Path], None]) -> Path:
    """The folder `name`, filled by `build` once per test session: under
    pytest-xdist the first worker that needs it builds it and the others
    wait for it and read it (pytest-xdist's recipe for a fixture that runs
    once: a file lock in the folder the session's workers share). The tests
    that use it only read it."""
    if not distributed:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent  # this session's, shared by its workers
    folder, done = shared / name, shared / f"{name}.done"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed in the other worker
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture
def places(tmp_path) -> dict[str, Path]:
    """Output paths that cannot be folders: a file, a path under a file, a
    place no process can write (procfs refuses even root)."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    return {"file": afile, "under a file": afile / "sub", "unwritable": Path("/proc/crossbn-out")}
