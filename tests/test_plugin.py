"""End to end through the real command and real pytest-xdist workers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossbn.backends import discover, load
from crossbn.records.results import VOLATILE, read, stable
from crossbn.spec.suites import load_suite

MODULE = str(Path(__file__).parent / "backends" / "numpy_variants.py")
FOUR = ["torch", "keras-tensorflow", "keras-jax", "keras-torch"]
# Runs compared field for field with other runs of the same tests split
# otherwise (shards) diagnose each finding on its own: grouped, a finding's
# diagnosis depends on which of its root cause's findings its process saw
# first (docs/localization.md, *One diagnosis per root cause*).
EACH = ("--diagnosis", "each")


def crossbn(*args, env=None, timeout=900):
    if args[:1] == ("run",):  # the conventions a run observes after its tests: tested in test_report.py
        args = ("run", "--no-conventions", *args[1:])
    return subprocess.run(
        [sys.executable, "-m", "crossbn", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def smoke_runs(built_once):
    """The smoke suite on the four foundation backends, with -n 2 and with
    -n 0: each run's folder and its process, made once for the session's
    workers."""

    def build(root):
        for n in ("2", "0"):
            proc = crossbn(
                "run", "--suite", "smoke", "--backends", ",".join(FOUR), "-n", n, "--out", str(root / f"n{n}"), *EACH
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr
            (root / f"n{n}.json").write_text(
                json.dumps(
                    {"args": proc.args, "returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
                )
            )

    root = built_once("plugin-smoke-runs", build)
    return {
        n: (root / f"n{n}", subprocess.CompletedProcess(**json.loads((root / f"n{n}.json").read_text())))
        for n in ("2", "0")
    }


@pytest.mark.slow
def test_one_record_per_case_backend_device(smoke_runs):
    d, proc = smoke_runs["2"]
    records = read(d / "results.jsonl")
    cases = load_suite("smoke")
    specs = discover()
    # a case that sets Flax's switches is not one for these backends: not generated for them
    wanted = {(c.id, b, "cpu") for c in cases for b in FOUR if load(specs[b]).applies(c)}
    assert any(c.options for c in cases) and len(wanted) < len(cases) * len(FOUR)
    assert len(records) == len(wanted)
    assert {(r["case_id"], r["backend"], r["device"]) for r in records} == wanted
    for r in records:
        assert r["version"] and r["verdict"] in ("match", "convention", "deviation", "nan-mismatch", "unsupported")
        if r["verdict"] != "unsupported":
            assert r["observables"], r
            for o in r["observables"].values():
                assert {"ratio", "max_abs", "max_rel", "max_ulp", "where", "verdict"} <= set(o)
    # each xdist worker wrote its own file, merged by the controller
    assert sorted(p.name for p in d.glob("results-*.jsonl")) == ["results-gw0.jsonl", "results-gw1.jsonl"]
    assert "crossbn verdicts" in proc.stdout


@pytest.mark.slow
def test_under_xdist_each_backend_runs_on_one_worker(smoke_runs):
    """crossbn/execution/schedule.py: a backend's tests are one unit of work, so its
    framework is started once per run; both workers still get work."""
    d, _ = smoke_runs["2"]
    workers = {}
    for r in read(d / "results.jsonl"):
        workers.setdefault(r["backend"], set()).add(r["worker"])
    assert set(workers) == set(FOUR)
    assert all(len(w) == 1 for w in workers.values()), workers
    assert set().union(*workers.values()) == {"gw0", "gw1"}


def test_backend_scope_is_read_from_the_test_id():
    from crossbn.execution.schedule import scope_of

    scope = scope_of(["flax-nnx", "flax-nnx-jit", "torch"], ["cpu", "cuda"])
    mod = "crossbn/conformance/test_batchnorm.py::test_batchnorm"
    assert scope(f"{mod}[offset-f16-64x4-cf-t3e-1b5716f8-flax-nnx-jit-cpu]") == "crossbn:flax-nnx-jit"
    assert scope(f"{mod}[offset-f16-64x4-cf-t3e-1b5716f8-flax-nnx-cuda]") == "crossbn:flax-nnx"
    assert scope(f"{mod}[x-torch-cpu]") == "crossbn:torch"
    assert scope("tests/test_other.py::test_a[torch-cpu]") == "tests/test_other.py::test_a[torch-cpu]"


@pytest.mark.slow
def test_serial_and_parallel_runs_give_the_same_results(smoke_runs):
    """Determinism (docs/reliability.md): -n 2 and -n 0 give the same records
    but for the scheduling and timing fields (results.VOLATILE), and those
    are all that differs: the inputs' digests included, so byte for byte
    the same inputs."""
    a = read(smoke_runs["2"][0] / "results.jsonl")
    b = read(smoke_runs["0"][0] / "results.jsonl")
    assert [stable(r) for r in a] == [stable(r) for r in b]
    differing = {k for r, q in zip(a, b) for k in r.keys() | q.keys() if r.get(k) != q.get(k)}
    assert differing <= set(VOLATILE) and "seconds" in differing


@pytest.mark.slow
def test_inputs_are_the_same_bytes_in_every_process(smoke_runs):
    """Each judged record's input digests, from xdist workers and from a plain
    run, are those of the inputs generated here, in this process, from the
    case alone."""
    from crossbn.oracle.inputs import generate
    from crossbn.spec.case import Case
    from crossbn.verdict.judge import digests

    checked = 0
    for n in ("2", "0"):
        for r in read(smoke_runs[n][0] / "results.jsonl"):
            if r["verdict"] == "unsupported":
                continue
            mine = digests(generate(Case.from_dict(r["case"])))
            assert {k: v["digest"] for k, v in r["inputs"].items()} == mine, r["pytest_id"]
            checked += 1
    assert checked > 20


@pytest.mark.slow
def test_two_shards_merged_give_the_results_of_one_run(smoke_runs, tmp_path):
    """CI sharding: two shards as separate processes (one with -n 2, one
    without), merged by `crossbn report`, are the unsharded run."""
    whole = [stable(r) for r in read(smoke_runs["0"][0] / "results.jsonl")]
    parts = []
    for k, n in (("1", "2"), ("2", "0")):
        d = tmp_path / f"shard{k}"
        proc = crossbn(
            "run",
            "--suite",
            "smoke",
            "--backends",
            ",".join(FOUR),
            "-n",
            n,
            "--shard",
            f"{k}/2",
            "--out",
            str(d),
            *EACH,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        parts.append({(r["case_id"], r["backend"]) for r in read(d / "results.jsonl")})
        assert json.loads((d / "run.json").read_text())["shard"] == f"{k}/2"
    assert parts[0] and parts[1] and not parts[0] & parts[1]  # each test in exactly one shard
    merged = crossbn("report", str(tmp_path / "shard1"), str(tmp_path / "shard2"), "--out", str(tmp_path / "merged"))
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert [stable(r) for r in read(tmp_path / "merged" / "results.jsonl")] == whole


@pytest.mark.slow  # a real framework's worker (Keras, PyTorch): 4-6 s
def test_header_names_versions_and_failure_names_case_observable_ratio(tmp_path):
    env = {"CROSSBN_SUITE": "smoke", "CROSSBN_BACKENDS": "keras-jax", "CROSSBN_OUT": str(tmp_path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--pyargs",
            "crossbn.conformance",
            "-p",
            "no:cacheprovider",
            "-k",
            "smoke-f64-16x4",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert "crossbn: suite smoke" in proc.stdout and "keras-jax" in proc.stdout and "jax 0." in proc.stdout
    records = read(tmp_path / "results.jsonl")
    assert len(records) == 1
    if records[0]["verdict"] == "deviation":  # Keras on JAX computing float64 in float32 (see README)
        worst = records[0]["worst"]["observable"]
        assert f"{worst}: error/bound = " in proc.stdout and "elements over bound" in proc.stdout
        assert records[0]["case_id"] in proc.stdout


def test_user_backend_module_through_env(tmp_path):
    env = {"CROSSBN_BACKEND_MODULE": MODULE}
    proc = crossbn("run", "--suite", "smoke", "--backends", "numpy-twopass", "-n", "0", "--out", str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdicts = {r["verdict"] for r in read(tmp_path / "results.jsonl")}
    assert verdicts <= {"match", "unsupported"} and "match" in verdicts


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backends", "nosuch"], "unknown backend(s) nosuch"),
        (["--devices", "tpu"], "unknown device(s) tpu; known: cpu, cuda"),
        (["--suite", "nosuchsuite"], "unknown suite 'nosuchsuite'"),
        # checked by `crossbn run` itself, before pytest starts: named as it was given
        (["--timeout", "-1"], "crossbn run: --timeout: must be a positive number of seconds, got '-1'"),
        (["--timeout", "soon"], "crossbn run: --timeout: must be a positive number of seconds, got 'soon'"),
        (["--shard", "3/2"], "crossbn run: --shard: '3/2': K must be between 1 and N (got shard 3 of 2)"),
        (["--shard", "half"], "crossbn run: --shard: 'half' is not K/N"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(tmp_path, args, message):
    proc = crossbn("run", "-n", "0", "--out", str(tmp_path), *args)
    assert proc.returncode == 2
    assert message in proc.stdout + proc.stderr


def test_malformed_suite_file_is_named(tmp_path):
    bad = tmp_path / "mine.toml"
    bad.write_text("[[group]]\nname = 'g'\n[group.axes]\nmomentum = [0.5, 7.0]\n")
    proc = crossbn("run", "-n", "0", "--out", str(tmp_path), "--suite", str(bad))
    assert proc.returncode == 2
    assert "mine.toml group #1 'g', case (momentum=7.0): field 'momentum'" in proc.stdout + proc.stderr


def test_strict_exit_code(tmp_path):
    env = {"CROSSBN_BACKEND_MODULE": MODULE}
    suite = tmp_path / "offset.toml"
    suite.write_text("[[group]]\nname = 'far'\nshape = [64, 4, 8]\noffset_ratio = 1000.0\ngradients = false\n")
    lax = crossbn(
        "run", "--suite", str(suite), "--backends", "numpy-onepass", "-n", "0", "--out", str(tmp_path / "a"), env=env
    )
    strict = crossbn(
        "run",
        "--suite",
        str(suite),
        "--backends",
        "numpy-onepass",
        "-n",
        "0",
        "--out",
        str(tmp_path / "b"),
        "--strict",
        env=env,
    )
    assert lax.returncode == 0 and strict.returncode == 1
    assert json.loads((tmp_path / "b" / "results.jsonl").read_text())["verdict"] == "deviation"


def test_a_new_run_replaces_an_old_one_in_the_same_folder(tmp_path):
    env = {"CROSSBN_BACKEND_MODULE": MODULE}
    one = tmp_path / "one.toml"
    one.write_text("[[group]]\nname = 'one'\nshape = [8, 3]\ngradients = false\n")
    first = crossbn(
        "run", "--suite", "smoke", "--backends", "numpy-twopass", "-n", "2", "--out", str(tmp_path / "d"), env=env
    )
    second = crossbn(
        "run", "--suite", str(one), "--backends", "numpy-twopass", "-n", "0", "--out", str(tmp_path / "d"), env=env
    )
    assert first.returncode == second.returncode == 0
    records = read(tmp_path / "d" / "results.jsonl")
    assert [r["group"] for r in records] == ["one"]


@pytest.mark.slow
def test_faulty_backend_does_not_end_the_run(tmp_path):
    """Segfault, abort, exits, a hang, an exception and malformed outputs, each
    in the middle of a real parallel run: every case still gets its record."""
    from crossbn.backends import import_file

    faults = import_file(MODULE).FAULTS
    suite = tmp_path / "faults.toml"
    seeds = [1, *faults, 2]
    suite.write_text(f"[[group]]\nname = 'faults'\nshape = [8, 3]\ngradients = false\n[group.axes]\nseed = {seeds}\n")
    proc = crossbn(
        "run",
        "--suite",
        str(suite),
        "--backends",
        "numpy-faulty",
        "-n",
        "2",
        "--timeout",
        "5",
        "--out",
        str(tmp_path / "out"),
        env={"CROSSBN_BACKEND_MODULE": MODULE},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdicts = {r["case"]["seed"]: r["verdict"] for r in read(tmp_path / "out" / "results.jsonl")}
    expected = {
        "abort": "crash",
        "segfault": "crash",
        "exit": "crash",
        "hard-exit": "crash",
        "hang": "timeout",
        "raise": "error",
        "wrong-shape": "error",
        "wrong-dtype": "error",
        "not-arrays": "error",
    }
    assert verdicts == {1: "match", 2: "match", **{s: expected[f] for s, f in faults.items()}}
