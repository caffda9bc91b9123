"""Side by side: one framework, two releases, in one run.

The second release lives in a real second virtual environment, made here
with `python -m venv`; it sees this environment's packages (NumPy) through
a .pth file, and its own site-packages holds the "release": a module
`crossbn_drift_release` that makes tests/backends/drifting.py report
another version and shift channel 0 of y, as an upgrade might. The run
starts that environment's python as the backend's worker process.
"""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from crossbn.backends import BackendError, choose, discover, instantiate

BACKENDS = Path(__file__).parent / "backends"
MODULES = os.pathsep.join(str(BACKENDS / f) for f in ("drifting.py", "numpy_variants.py"))
SUITE = "[[group]]\nname = 'g'\nshape = [16, 3]\ngradients = false\n[group.axes]\nseed = [1, 2, 3]\n"


def make_venv(where: Path, release: dict | None = None, modules: dict | None = None) -> Path:
    """A real virtual environment whose python sees this one's packages
    (after its own) and holds `release` as crossbn_drift_release."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_parent_env.pth").write_text("".join(p + "\n" for p in sorted(ours)))
    if release is not None:
        (site / "crossbn_drift_release.py").write_text(
            f"VERSION = {release['version']!r}\nDRIFT = {release['drift']!r}\n"
        )
    for name, text in (modules or {}).items():
        (site / f"{name}.py").write_text(text)
    return python


VENVS = {"drift-2.0": "drift-2.0", "same-1.0.1": "same-1.0.1/.venv", "bare": "bare"}  # name: folder


@pytest.fixture(scope="module")
def venvs(built_once):
    """Three environments beside this one, made once for the session's workers."""
    root = built_once("side-by-side-venvs", _three_venvs)
    return {name: root / folder / "bin" / "python" for name, folder in VENVS.items()}


def _three_venvs(root):
    make_venv(root / VENVS["drift-2.0"], {"version": "2.0", "drift": 0.5})
    make_venv(root / VENVS["same-1.0.1"], {"version": "1.0.1", "drift": 0.0})
    make_venv(root / VENVS["bare"])


def crossbn(tmp_path, backends, name, *extra):
    suite = tmp_path / "g.toml"
    suite.write_text(SUITE)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "crossbn",
            "run",
            "--suite",
            str(suite),
            "--backends",
            backends,
            "-n",
            "0",
            "--no-conventions",
            "--progress",
            "off",
            "--out",
            str(tmp_path / name),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "CROSSBN_BACKEND_MODULE": MODULES},
    )


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


# ---- naming ------------------------------------------------------------------


def test_names_come_from_the_environment_folder_or_a_label(venvs):
    specs = discover()
    got = choose(f"torch@{venvs['drift-2.0']},torch,torch@{venvs['same-1.0.1']},torch@old={venvs['bare']}", specs)
    assert [c.name for c in got] == ["torch@drift-2.0", "torch", "torch@same-1.0.1", "torch@old"]
    assert got[0].interpreter == str(venvs["drift-2.0"]) and got[1].interpreter is None
    run_specs, backends = instantiate(got, specs)
    assert run_specs["torch@old"] == specs["torch"]
    # every later-named one is compared with the first-named of its framework
    assert [backends[c.name].compare_with for c in got] == [
        None,
        "torch@drift-2.0",
        "torch@drift-2.0",
        "torch@drift-2.0",
    ]
    assert backends["torch@old"].available() is None  # its own interpreter decides, in the worker


@pytest.mark.parametrize(
    "value, message",
    [
        ("torch@/no/such/python", "torch@/no/such/python: no Python interpreter at '/no/such/python'"),
        ("torch@", "no interpreter after '@'"),
        ("torch@bad label={python}", "label 'bad label' must be"),
        ("nosuch@{python}", "unknown backend\\(s\\) nosuch"),
        ("torch@x={python},torch@x={other}", "two backends would both be named torch@x"),
    ],
)
def test_bad_side_by_side_names_are_named(venvs, value, message):
    with pytest.raises(BackendError, match=message):
        choose(value.format(python=venvs["bare"], other=venvs["drift-2.0"]), discover())


def test_a_bad_interpreter_is_a_usage_error(tmp_path):
    proc = crossbn(tmp_path, "numpy-drifting@/no/such/python", "bad")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no Python interpreter at '/no/such/python'" in proc.stdout + proc.stderr


# ---- real runs ---------------------------------------------------------------


@pytest.fixture(scope="module")
def drifted(built_once, venvs):
    """Release 1.0 (this interpreter) first, release 2.0 (its own venv)
    second: the run's folder and its process, made once for the session's
    workers."""

    def build(tmp):
        proc = crossbn(tmp, f"numpy-drifting,numpy-drifting@{venvs['drift-2.0']}", "run")
        (tmp / "process.json").write_text(
            json.dumps({"args": proc.args, "returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr})
        )

    tmp = built_once("side-by-side-drifted", build)
    return tmp / "run", subprocess.CompletedProcess(**json.loads((tmp / "process.json").read_text()))


def test_a_drifted_release_is_a_regression_and_fails_the_run(drifted):
    out, proc = drifted
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "side by side, numpy-drifting@drift-2.0 against numpy-drifting: regressed 3" in proc.stdout
    assert "the gate fails for numpy-drifting@drift-2.0 against numpy-drifting: regressed 3" in proc.stderr
    data = json.loads((out / "side-by-side.json").read_text())
    (c,) = data["comparisons"]
    assert (c["base"], c["new"], c["counts"]) == ("numpy-drifting", "numpy-drifting@drift-2.0", {"regressed": 3})
    assert all(r["base"]["version"] == "1.0" and r["new"]["version"] == "2.0" for r in c["rows"])


def test_both_releases_are_judged_against_the_oracle_and_each_other(drifted):
    out, _ = drifted
    by = {}
    for r in records(out):
        by.setdefault(r["backend"], []).append(r)
    assert sorted(by) == ["numpy-drifting", "numpy-drifting@drift-2.0"]
    assert all(
        r["verdict"] == "match" and r["interpreter"] is None and r["cross_version"] is None
        for r in by["numpy-drifting"]
    )
    for r in by["numpy-drifting@drift-2.0"]:
        assert r["version"] == "2.0" and r["interpreter"].endswith("drift-2.0/bin/python")
        assert r["verdict"] == "deviation" and r["worst"]["observable"].endswith(".y")
        versus = r["cross_version"]
        assert versus["against"] == "numpy-drifting" and versus["version"] == "1.0"
        assert versus["verdict"] == "disagree"
        y = [v for k, v in versus["observables"].items() if k.endswith(".y")]
        assert y and all(not v["bitwise"] and v["max_abs"] == pytest.approx(0.5, rel=1e-6) for v in y)


def test_the_report_labels_each_row_with_its_version(drifted):
    out, _ = drifted
    index = (out / "index.html").read_text()
    assert 'numpy-drifting@drift-2.0/cpu<br><span class="version">2.0</span>' in index
    assert 'numpy-drifting/cpu<br><span class="version">1.0</span>' in index
    assert 'href="side-by-side.html#1"' in index
    page = (out / "side-by-side.html").read_text()
    assert "numpy-drifting@drift-2.0 against numpy-drifting" in page and page.count("1.0 → 2.0") == 3
    finding = next((out / "findings").glob("*drift-2.0*.html")).read_text()
    assert 'id="cross-version"' in finding and "Against the other release" in finding
    assert "torch" not in finding.split('id="cross-version"')[1].split("</section>")[0]


def test_an_unchanged_release_reports_no_regression(tmp_path, venvs):
    proc = crossbn(tmp_path, f"numpy-drifting,numpy-drifting@{venvs['same-1.0.1']}", "run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (c,) = json.loads((tmp_path / "run" / "side-by-side.json").read_text())["comparisons"]
    assert c["counts"] == {"unchanged": 3}  # bit-identical outputs, other version string
    other = [r for r in records(tmp_path / "run") if r["backend"] == "numpy-drifting@same-1.0.1"]
    assert len(other) == 3 and all(
        r["version"] == "1.0.1" and r["cross_version"]["verdict"] == "bitwise" for r in other
    )


def test_a_framework_only_the_other_environment_has(tmp_path, venvs, tmp_path_factory):
    """numpy-notinstalled needs a module this interpreter lacks: unavailable
    here, run there when that environment has it, unavailable when not."""
    has = make_venv(tmp_path_factory.mktemp("has") / "has-it", modules={"crossbn_no_such_framework": ""})
    proc = crossbn(tmp_path, f"numpy-notinstalled@{has},numpy-notinstalled@{venvs['bare']}", "run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = {r["backend"]: r for r in records(tmp_path / "run")}
    assert got["numpy-notinstalled@has-it"]["verdict"] == "match"
    bare = got["numpy-notinstalled@bare"]
    assert bare["verdict"] == "unsupported" and f"(in {venvs['bare']})" in bare["reason"]
    assert "'crossbn_no_such_framework' is not installed" in bare["reason"]


def test_outputs_of_two_releases_are_compared_value_by_value():
    import numpy as np

    from crossbn.verdict.outputs import compare_runs

    y = np.linspace(-1, 1, 12, dtype=np.float64).reshape(3, 4)
    bounds = {"t.y": np.full((3, 4), 1e-15), "t.batch_mean": np.full(4, 1e-15), "t.dx": np.full((3, 4), 1e-15)}
    new = {"t.y": y.copy(), "t.batch_mean": y[0].astype(np.float32), "t.dx": y + 1e-12}
    old = {"t.y": y.copy(), "t.batch_mean": y[0].copy(), "t.dx": y.copy()}
    got = compare_runs(new, old, bounds, "fw@new", "fw@old")
    assert got["against"] == "fw@old" and got["verdict"] == "disagree"
    obs = got["observables"]
    assert obs["t.y"]["bitwise"] and obs["t.y"]["verdict"] == "match"
    assert obs["t.dx"]["verdict"] == "deviation" and obs["t.dx"]["max_abs"] == pytest.approx(1e-12, rel=1e-3)
    # a dtype that changed between releases is named, and the values still compared
    assert obs["t.batch_mean"]["verdict"] == "deviation" and not obs["t.batch_mean"]["bitwise"]
    assert "fw@new returns float32, fw@old float64" in obs["t.batch_mean"]["note"]
    assert obs["t.batch_mean"]["max_abs"] < 1e-7
    same = compare_runs({"t.y": y}, {"t.y": y.copy()}, bounds, "a", "b")
    assert same["verdict"] == "bitwise"


def test_side_by_side_pages_in_chromium(drifted, browser, tmp_path):
    from chromium_page import open_page

    out, _ = drifted
    page, problems = open_page(browser, out / "index.html")
    assert problems == []
    rows = page.locator("table.matrix tbody th")
    labels = [rows.nth(i).inner_text() for i in range(rows.count())]
    assert labels == ["numpy-drifting/cpu\n1.0", "numpy-drifting@drift-2.0/cpu\n2.0"]
    page.click("p.side-by-side a")
    assert page.url.endswith("side-by-side.html#1")
    section = page.locator("section#\\31 ")  # id "1"
    assert "numpy-drifting@drift-2.0 against numpy-drifting" in section.locator("h2").inner_text()
    assert section.locator("tr.c-regressed").count() == 3
    page.screenshot(path=str(tmp_path / "side-by-side.png"), full_page=True)
    finding = next((out / "findings").glob("*drift-2.0*.html"))
    page, problems = open_page(browser, finding)
    assert problems == []
    table = page.locator("#cross-version table.cross-run")
    assert table.is_visible()
    y = table.locator("tr", has_text=".y")
    assert y.count() >= 1 and "no" in y.first.inner_text()  # not bit-identical


@pytest.mark.slow
def test_models_suite_side_by_side(tmp_path, venvs):
    """A network case on PyTorch under another interpreter (the same torch,
    seen through the .pth): CRADLE's layer map between the two is `agree`."""
    pytest.importorskip("torch")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossbn",
            "run",
            "--suite",
            "models",
            "--backends",
            f"torch@{venvs['same-1.0.1']},torch",
            "-n",
            "0",
            "--no-conventions",
            "--progress",
            "off",
            "--out",
            str(tmp_path / "run"),
            "--",
            "-k",
            "train_eval and f32",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("CROSSBN_")},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    got = records(tmp_path / "run")
    plain = [r for r in got if r["backend"] == "torch"]
    assert plain and len(plain) * 2 == len(got)
    for r in plain:
        assert r["cross_version"]["against"] == "torch@same-1.0.1" and r["cross_version"]["verdict"] == "agree"
        assert r["cross_version"]["version"] == r["version"]
    (c,) = json.loads((tmp_path / "run" / "side-by-side.json").read_text())["comparisons"]
    assert set(c["counts"]) == {"unchanged"}
