"""crossbn installed as users install it: a built wheel, and `pip install .`
(not editable), each into a fresh virtual environment, run the smoke suite
and write a verified bug report, from a folder outside the checkout. The
catalogues, the known-differences file and the templates come from the
installed package; the frameworks come from this environment (a .pth file),
so nothing is downloaded."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crossbn.spec.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
# what a source distribution would hold: no environments, reports or caches
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "reports",
    "site",
    "build",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
)


def _fresh_venv(where: Path) -> Path:
    """A virtual environment that sees this one's frameworks but not its crossbn."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, capture_output=True)
    python = where / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "numpy").is_dir())
    Path(site, "frameworks.pth").write_text(ours + "\n")  # appended after its own site-packages
    return python


def _install(kind: str, tmp_path: Path) -> Path:
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    python = _fresh_venv(tmp_path / "env")
    pip = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation"]
    if kind == "wheel":
        dist = tmp_path / "dist"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(dist),
                str(source),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        wheel = next(dist.glob("crossbn-*.whl"))
        done = subprocess.run([*pip, str(wheel)], capture_output=True, text=True)
    else:
        done = subprocess.run([*pip, str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return python


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["wheel", "pip install ."])
def test_an_installed_crossbn_runs_smoke_and_writes_a_bug_report(kind, tmp_path):
    pytest.importorskip("torch")
    python = _install(kind, tmp_path)
    where = tmp_path / "elsewhere"  # no checkout here: nothing can come from the source tree
    where.mkdir()
    found = subprocess.run(
        [str(python), "-c", "import crossbn, crossbn.spec.catalogue as c; print(crossbn.__file__);print(c.CASES_DIR)"],
        capture_output=True,
        text=True,
        cwd=where,
        check=True,
    ).stdout
    package = Path(found.splitlines()[0]).parent
    assert str(tmp_path / "env") in str(package) and "site-packages" in str(package), found
    for data in (
        "cases/smoke.toml",
        "cases/default.toml",
        "cases/found",
        "known/frameworks.toml",
        "report/templates",
        "bugreport/templates/ISSUE.md.j2",
    ):
        assert (package / data).exists(), data

    crossbn = str(python.parent / "crossbn")
    run = subprocess.run(
        [
            crossbn,
            "run",
            "--suite",
            "smoke",
            "--backends",
            "torch",
            "-n",
            "0",
            "--no-conventions",
            "--progress",
            "off",
            "--out",
            "run",
            "--known",
            "frameworks",
            "--strict",
        ],
        capture_output=True,
        text=True,
        cwd=where,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    records = [json.loads(line) for line in (where / "run" / "results.jsonl").read_text().splitlines()]
    cases = load_suite("smoke")  # every case, but those with another framework's options
    assert {c.id for c in cases if not c.options} <= {r["case_id"] for r in records} <= {c.id for c in cases}
    assert {r["backend"] for r in records} == {"torch"}
    assert (where / "run" / "index.html").is_file()
    findings = [r for r in records if r.get("known")]
    assert findings, "torch's CPU half-precision findings are known differences (crossbn/known/frameworks.toml)"

    finding = f"{findings[0]['case_id']}--torch--cpu"
    repro = subprocess.run(
        [crossbn, "repro", finding, "--results", "run", "--budget", "0", "--out", "br", "--known", "frameworks"],
        capture_output=True,
        text=True,
        cwd=where,
        timeout=900,
    )
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    folder = next((where / "br").iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["ISSUE.md", "case.toml", "finding.json", "repro.py"]
    assert (folder / "repro.py").read_text() in (folder / "ISSUE.md").read_text()
