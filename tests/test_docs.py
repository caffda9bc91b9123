"""The documentation: the MkDocs site (mkdocs.yml, docs/) builds with --strict,
so no broken link or anchor and no page left out of the nav; README.md stays a
short landing page whose links into docs/ resolve."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 250


def needs_mkdocs():
    try:
        import material  # noqa: F401  (mkdocs-material, which brings mkdocs)
        import mkdocs  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("the docs must build in CI (the test extra installs mkdocs-material)")
        pytest.skip("mkdocs-material is not installed (pip install -e '.[test]')")


def build(site_dir: Path, config: Path = ROOT / "mkdocs.yml") -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(config),
            "--site-dir",
            str(site_dir),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_the_docs_site_builds_strict(tmp_path):
    needs_mkdocs()
    done = build(tmp_path / "site")
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "architecture" / "index.html").is_file()


def test_a_broken_link_fails_the_strict_build(tmp_path):
    """The build above has teeth: one link to a page that does not exist fails
    it (planted in a copy of docs/, never in docs/ itself)."""
    needs_mkdocs()
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    page = docs / "index.md"
    page.write_text(page.read_text(encoding="utf-8") + "\n[nowhere](no-such-page.md)\n", encoding="utf-8")
    config = re.sub(r"(?m)^docs_dir:.*$", f"docs_dir: {docs}", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    (tmp_path / "mkdocs.yml").write_text(config, encoding="utf-8")
    done = build(tmp_path / "site", tmp_path / "mkdocs.yml")
    assert done.returncode != 0
    assert "no-such-page.md" in done.stdout + done.stderr


def test_the_readme_is_short_and_its_quick_start_is_the_two_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines, at most {MAX_README_LINES}: move the detail to docs/"
    )
    start = lines.index("## Quick start")
    fence = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    assert not any(line.startswith("## ") for line in lines[start + 1 : fence]), "## Quick start has no code block"
    end = next(i for i in range(fence + 1, len(lines)) if lines[i].startswith("```"))
    commands = [line for line in lines[fence + 1 : end] if line.strip() and not line.lstrip().startswith("#")]
    assert len(commands) == 2, commands
    assert commands[0].startswith("python3.11 -m venv .venv && ") and "crossbn run --suite" in commands[0]
    assert commands[1].startswith("sh tools/install-chromium && ") and " pytest " in commands[1]


def test_every_docs_link_in_the_readme_exists():
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\((docs/[^)#\s]*)(?:#[^)\s]*)?\)", text)
    assert targets, "README.md links no page of docs/"
    assert [t for t in targets if not (ROOT / t).exists()] == []
    # and each page it links to is one of the site's (in mkdocs.yml's nav)
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert [t for t in targets if t.endswith(".md") and t.removeprefix("docs/") not in nav] == []


def test_the_backends_page_has_the_generated_table():
    """docs/backends.md holds the same generated table as README.md
    (regenerate both with: crossbn backends --markdown)."""
    from crossbn.backends.table import markdown, readme_block

    assert readme_block((ROOT / "docs" / "backends.md").read_text(encoding="utf-8")) == markdown()
