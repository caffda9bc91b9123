"""Screenshot a report's index in headless Chromium (how docs/report-index.png
was made): the verdict matrix, the conventions table, the ratio chart and
the first findings.

    .venv/bin/python tools/screenshot-report.py reports/<run>/index.html docs/report-index.png
"""

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def main(index: str, out: str) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=exe,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(Path(index).resolve().as_uri())
        top = page.locator("#matrix").bounding_box()["y"] - 10
        bottom = page.locator("#findings").bounding_box()["y"] + 420
        page.screenshot(path=out, full_page=True, clip={"x": 0, "y": top, "width": 1280, "height": bottom - top})
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
