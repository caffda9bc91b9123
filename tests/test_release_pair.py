"""Two real releases of Keras, compared both ways, at small scale.

Keras 3.12.0 changed `keras.src.backend.common.dtypes.result_type` to force
64-bit dtypes to 32-bit on every backend but TensorFlow (keras-team/keras
#21604), so BatchNormalization's `result_type(inputs.dtype, "float32")`
upcast now computes a float64 layer in float32 on JAX and PyTorch; 3.11.3
computes it in float64. Both releases are installed from PyPI with
tools/release-venv (Keras only, ~1 MB each; everything else from this
environment) and run on smoke's float64 cases:
- against a baseline: the suite in 3.11.3's environment, saved; then in
  3.12.0's environment with --compare, which must report the regressions;
- side by side: both releases in one run, each in its own worker process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # another release installed beside this one

ROOT = Path(__file__).resolve().parent.parent
OLD, NEW = "3.11.3", "3.12.0"


@pytest.fixture(scope="module")
def releases(built_once):
    """Both releases' interpreters, installed once for the session's workers."""
    return json.loads((built_once("keras-releases", _install_both) / "pythons.json").read_text())


def _install_both(root):
    pythons = {}
    for version in (OLD, NEW):
        proc = subprocess.run(
            ["sh", str(ROOT / "tools" / "release-venv"), f"keras=={version}", str(root / f"keras-{version}")],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            env={**os.environ, "PYTHON": sys.executable},
        )
        if proc.returncode != 0:
            why = f"cannot install keras=={version} from PyPI: {proc.stderr.strip()[-500:]}"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(why)
            pytest.skip(why)
        pythons[version] = proc.stdout.strip().splitlines()[-1]
    (root / "pythons.json").write_text(json.dumps(pythons))


def crossbn(python, out, *args):
    """crossbn run under `python`, from the project root (so that the
    release environment, which sees this one's packages, imports crossbn)."""
    return subprocess.run(
        [
            python,
            "-m",
            "crossbn",
            "run",
            "--suite",
            "smoke",
            "-n",
            "0",
            "--no-conventions",
            "--progress",
            "off",
            "--out",
            str(out),
            *args,
            "--",
            "-k",
            "f64",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("CROSSBN_")},
    )


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_against_a_baseline(tmp_path, releases):
    before = crossbn(releases[OLD], tmp_path / "before", "--backends", "keras-jax")
    assert before.returncode == 0, before.stdout[-3000:] + before.stderr[-2000:]
    assert {r["version"] for r in records(tmp_path / "before")} == {f"keras {OLD} / jax 0.10.2"}
    assert all(r["verdict"] == "match" for r in records(tmp_path / "before"))
    save = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossbn",
            "baseline",
            "save",
            "old",
            str(tmp_path / "before"),
            "--dir",
            str(tmp_path / "baselines"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert save.returncode == 0, save.stderr
    after = crossbn(
        releases[NEW], tmp_path / "after", "--backends", "keras-jax", "--compare", str(tmp_path / "baselines" / "old")
    )
    assert after.returncode == 1, after.stdout[-3000:] + after.stderr[-2000:]
    comparison = json.loads((tmp_path / "after" / "comparison.json").read_text())
    n = len(records(tmp_path / "after"))
    assert n >= 3 and comparison["counts"] == {"regressed": n}
    row = comparison["rows"][0]
    assert row["base"]["verdict"] == "match" and row["new"]["verdict"] == "deviation"
    assert (row["base"]["version"], row["new"]["version"]) == (f"keras {OLD} / jax 0.10.2", f"keras {NEW} / jax 0.10.2")


def test_side_by_side(tmp_path, releases):
    proc = crossbn(
        sys.executable, tmp_path / "run", "--backends", f"keras-jax@{releases[OLD]},keras-jax@{releases[NEW]}"
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    got = records(tmp_path / "run")
    old = [r for r in got if r["backend"] == f"keras-jax@keras-{OLD}"]
    new = [r for r in got if r["backend"] == f"keras-jax@keras-{NEW}"]
    assert old and len(old) == len(new)
    assert all(r["verdict"] == "match" and r["version"].startswith(f"keras {OLD} ") for r in old)
    for r in new:
        assert r["verdict"] == "deviation" and r["version"].startswith(f"keras {NEW} ")
        assert r["diagnosis"]["formulation"].startswith("compute=float32")  # the fingerprint names the cause
        assert r["cross_version"]["against"] == f"keras-jax@keras-{OLD}" and r["cross_version"]["verdict"] == "disagree"
    (c,) = json.loads((tmp_path / "run" / "side-by-side.json").read_text())["comparisons"]
    assert c["counts"] == {"regressed": len(new)}
    page = (tmp_path / "run" / "side-by-side.html").read_text()
    assert f"keras-jax@keras-{NEW} against keras-jax@keras-{OLD}" in page
