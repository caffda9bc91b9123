"""Headless Chromium for the report's tests: Debian's package (installed by
tools/install-chromium, the README's test setup), driven by Playwright,
which never downloads a browser here. The `browser` fixture is in
conftest.py; a test loads a page with `open_page(browser, path)`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def chromium() -> str | None:
    return os.environ.get("CROSSBN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def open_page(browser, path: Path, *, javascript: bool = True):
    """The page loaded from file://, with every console error, page error,
    dialog and network request outside the report's folder collected."""
    context = browser.new_context(java_script_enabled=javascript, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on(
        "request",
        lambda r: (
            None if r.url.startswith("file://") or r.url.startswith("data:") else problems.append(f"request: {r.url}")
        ),
    )
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, problems
