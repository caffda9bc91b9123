"""`crossbn bugs`, `crossbn repro` and `crossbn fuzz` as a new user meets them:
every path or name problem is one line and exit 2 before any work, with
nothing left behind; each help ends with examples; fuzz's --devices (and the
old --device) and where it saves regression cases by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossbn.spec.catalogue import CASES_DIR

from run_crossbn import NUMPY, RUN, crossbn, one_line_exit_2


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A real run with a finding: the one-pass variance on smoke's offset cases (float32)."""
    out = tmp_path_factory.mktemp("bugs") / "r"
    proc = crossbn(*RUN, "--backends", "numpy-onepass", "--out", out, "--", "-k", "f32")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _finding(results: Path) -> dict:
    return next(
        r for r in map(json.loads, (results / "results.jsonl").read_text().splitlines()) if r["verdict"] == "deviation"
    )


@pytest.mark.parametrize("where", ["file", "under a file", "unwritable"])
def test_repro_and_fuzz_refuse_an_output_path_before_any_work(tmp_path, places, results, where):
    bad = places[where]
    finding = _finding(results)
    name = f"{finding['case_id']}--numpy-onepass--cpu"
    before = sorted(p.name for p in tmp_path.iterdir())
    commands = {
        "repro": ("repro", name, "--results", results, "--backend-module", NUMPY, "--out", bad),
        "fuzz --out": ("fuzz", "--backends", "numpy-onepass", "--backend-module", NUMPY, "--out", bad),
        "fuzz --found": (
            "fuzz",
            "--backends",
            "numpy-onepass",
            "--backend-module",
            NUMPY,
            "--out",
            tmp_path / "fz",
            "--found",
            bad,
        ),
    }
    for what, args in commands.items():
        proc = crossbn(*args, cwd=tmp_path)
        one_line_exit_2(proc, str(bad))
        assert "shrinking" not in proc.stdout and "records ->" not in proc.stdout, what  # no work started
        assert sorted(p.name for p in tmp_path.iterdir()) == before, what  # nothing made on the way
    assert not (results / "bug-reports").exists()


def test_names_that_do_not_exist_are_one_line_and_exit_2(tmp_path, results):
    finding = _finding(results)
    cases = {
        "bugs: no such results": (("bugs", tmp_path / "nowhere"), "no results file"),
        "bugs: no run at all": (("bugs",), "no run under reports/"),
        "repro: no such results": (
            ("repro", f"{finding['case_id']}--numpy-onepass", "--results", tmp_path / "nowhere"),
            "no results file",
        ),
        "repro: unknown backend": (
            ("repro", f"{finding['case_id']}--nosuch--cpu", "--results", results),
            "unknown backend(s) nosuch",
        ),
        "repro: unknown device": (
            (
                "repro",
                f"{finding['case_id']}--numpy-onepass--gpu9",
                "--results",
                results,
                "--backend-module",
                NUMPY,
            ),
            "unknown device 'gpu9'",
        ),
        "fuzz: unknown backend": (("fuzz", "--backends", "torch,nosuch"), "unknown backend(s) nosuch"),
        "fuzz: unknown device": (
            ("fuzz", "--backends", "numpy-onepass", "--backend-module", NUMPY, "--devices", "cpu,tpu"),
            "unknown device 'tpu'",
        ),
        "fuzz: backend not installed": (
            ("fuzz", "--backends", "numpy-notinstalled", "--backend-module", NUMPY),
            "crossbn_no_such_framework",
        ),
    }
    for what, (args, fragment) in cases.items():
        proc = crossbn(*args, cwd=tmp_path)
        one_line_exit_2(proc, fragment)
        assert list(tmp_path.iterdir()) == [], what  # no reports/, no bug-reports/, no found/


@pytest.mark.parametrize("command", ["bugs", "repro", "fuzz"])
def test_each_help_ends_with_examples(command):
    proc = crossbn(command, "--help")
    assert proc.returncode == 0
    tail = proc.stdout.rstrip().splitlines()
    at = max(i for i, line in enumerate(tail) if line.startswith("examples:"))
    assert at >= len(tail) - 3 and all(line.startswith(f"  crossbn {command} ") for line in tail[at + 1 :])


@pytest.mark.slow  # two searches and a shrink: about 20 s
def test_fuzz_takes_devices_as_run_does_and_saves_cases_beside_its_records(tmp_path):
    """--devices cpu,cuda on a backend whose "cuda" is the one-pass variance: the
    finding is the cuda one; its regression case goes to <out>/found, not into
    crossbn's own cases (which the default suite includes)."""
    package_found = sorted(p.name for p in (CASES_DIR / "found").glob("*"))
    args = ("fuzz", "--backends", "numpy-twodevice", "--backend-module", NUMPY, "--dtypes", "float32")
    args += ("--examples", "40", "--seed", "3", "--shrink-budget", "10s")
    proc = crossbn(*args, "--devices", "cpu,cuda", "--out", tmp_path / "fz", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "fz" / "fuzz.jsonl").read_text().splitlines()]
    assert {r["device"] for r in records} == {"cpu", "cuda"}
    assert {r["device"] for r in records if r["verdict"] == "deviation"} == {"cuda"}
    saved = sorted((tmp_path / "fz" / "found").glob("*.toml"))
    assert saved and "numpy-twodevice/cuda" in proc.stdout
    assert sorted(p.name for p in (CASES_DIR / "found").glob("*")) == package_found
    # the old spelling still works, and says what it is now
    old = crossbn(*args, "--examples", "2", "--device", "cuda", "--out", tmp_path / "old", cwd=tmp_path)
    assert old.returncode == 0 and "--device is now --devices" in old.stderr
    assert {json.loads(line)["device"] for line in (tmp_path / "old" / "fuzz.jsonl").read_text().splitlines()} == {
        "cuda"
    }


def test_repro_takes_the_finding_in_every_form_crossbn_prints_it(tmp_path, results, monkeypatch):
    """The report's page name (and file), the pytest id and node id a run
    prints, the bare case `crossbn bugs` lists; by default from the newest run
    under reports/, and from the built-in suites when no run has it."""
    from crossbn.bugreport.finding import locate

    rec = _finding(results)
    pid, case_id = rec["pytest_id"], rec["case_id"]
    forms = [
        f"{pid}--numpy-onepass--cpu",
        f"{pid}--numpy-onepass",
        f"{case_id[:8]}--numpy-onepass--cpu",
        f"{results}/findings/{pid}--numpy-onepass--cpu.html",
        f"{pid}-numpy-onepass-cpu",
        f"crossbn/conformance/test_batchnorm.py::test_batchnorm[{pid}-numpy-onepass-cpu]",
        pid,
    ]
    for form in forms:
        where = locate(form, str(results))
        assert (where.case.id, where.backend, where.device, where.record["case_id"]) == (
            case_id,
            "numpy-onepass",
            "cpu",
            case_id,
        ), form
    # no --results: the newest run under reports/, as `crossbn bugs` takes it
    (tmp_path / "reports" / "r").mkdir(parents=True)
    (tmp_path / "reports" / "r" / "results.jsonl").write_text((results / "results.jsonl").read_text())
    monkeypatch.chdir(tmp_path)
    assert locate(f"{pid}-numpy-onepass-cpu").run == Path("reports/r")
    # no run has it: every built-in suite is searched (this case is smoke's, not default's)
    monkeypatch.chdir(tmp_path / "reports")
    where = locate(f"{pid}-numpy-onepass-cpu")
    assert where.case.id == case_id and where.record is None and where.case.suite == "smoke"
    # and the command itself takes the pytest id: it gets as far as the backend (no repro.py template for it)
    proc = crossbn(
        "repro", f"{pid}-numpy-onepass-cpu", "--results", results, "--backend-module", NUMPY, "--budget", "0",
        "--out", tmp_path / "br",
    )  # fmt: skip
    assert proc.returncode == 1 and "no-template" in proc.stdout, proc.stdout + proc.stderr
