"""Interrupted runs: real `crossbn run` processes killed at random points.

Each scenario starts the smoke suite on torch and onnxruntime, kills one
process of the run (the controller, an xdist worker or a backend's worker)
with one signal at a random moment within an uninterrupted run's wall
time, and then checks what issue #9 promises (docs/reliability.md):

- nothing hangs: the run ends, and no process of it outlives it;
- every line of every results file is a whole record (a torn last line
  only where a SIGKILL can have cut a write short);
- `crossbn report DIR` renders it, marked incomplete when it was;
- `crossbn run --resume DIR` ends with the records of the uninterrupted run,
  field by field apart from timings.

The moments come from a seeded generator: CROSSBN_KILL_SEED=N replays a
failure (the seed and each moment are in the assertion messages).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crossbn.records.results import read, stable

pytestmark = pytest.mark.slow  # whole runs killed and resumed

psutil = pytest.importorskip("psutil")

BACKENDS = "torch,onnxruntime-opset15"
SEED = int(os.environ.get("CROSSBN_KILL_SEED", "20261123"))
# (signal, which process, -n): each way a run can be stopped from outside
SCENARIOS = [
    ("SIGINT", "controller", "0"),
    ("SIGTERM", "controller", "2"),
    ("SIGKILL", "controller", "0"),
    ("SIGKILL", "controller", "2"),
    ("SIGKILL", "xdist-worker", "2"),
    ("SIGKILL", "backend-worker", "0"),
]


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "crossbn", *args]


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(_command(*args), capture_output=True, text=True, timeout=timeout)


def _start(out: Path, n: str) -> subprocess.Popen:
    # each finding diagnosed on its own: grouped, a resumed run's findings
    # would have no representatives from the part that ran before the kill
    return subprocess.Popen(
        _command(
            "run",
            "--suite",
            "smoke",
            "--backends",
            BACKENDS,
            "-n",
            n,
            "--out",
            str(out),
            "--no-conventions",
            "--progress",
            "off",
            "--diagnosis",
            "each",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def uninterrupted(built_once):
    """The records of the same run left alone, and its wall time with -n 0
    and -n 2, measured once for the session's workers."""
    kept = json.loads((built_once("uninterrupted-runs", _run_twice) / "kept.json").read_text())
    return kept["records"], kept["wall"]


def _run_twice(root):
    records, wall = {}, {}
    for n in ("0", "2"):
        out = root / f"whole-n{n}"
        start = time.monotonic()
        proc = _run(
            "run",
            "--suite",
            "smoke",
            "--backends",
            BACKENDS,
            "-n",
            n,
            "--out",
            str(out),
            "--no-conventions",
            "--diagnosis",
            "each",
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        wall[n] = time.monotonic() - start
        records[n] = [stable(r) for r in read(out / "results.jsonl")]
    assert records["0"] == records["2"]
    (root / "kept.json").write_text(json.dumps({"records": records["0"], "wall": wall}))


def _target(proc: subprocess.Popen, which: str, n: str) -> psutil.Process | None:
    """The process to kill, once it exists (None: the run ended first)."""
    me = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            children = me.children()
            if which == "controller":
                return me
            if which == "xdist-worker" and children:
                return children[0]
            if which == "backend-worker":
                # -n 0: the controller's children; under -n, its workers' children
                found = children if n == "0" else [g for c in children for g in c.children()]
                if found:
                    return found[0]
        except psutil.NoSuchProcess:
            return None
        time.sleep(0.05)
    return None


def _lines_are_records(folder: Path, torn_allowed: bool, context: str) -> int:
    """Every newline-ended line of every results file parses to a record; an
    unended last line only where a SIGKILL may have cut it. Returns the count."""
    count = 0
    for path in sorted(folder.glob("results*.jsonl")):
        data = path.read_bytes()
        body, _, tail = data.rpartition(b"\n")
        for i, line in enumerate(body.split(b"\n") if body else [], 1):
            rec = json.loads(line)  # raises on a torn line in the middle
            assert {"case_id", "backend", "device", "verdict"} <= rec.keys(), f"{context}: {path.name}:{i}"
            count += 1
        assert not tail or torn_allowed, f"{context}: {path.name} ends in a torn line {tail[:60]!r}"
    return count


@pytest.mark.parametrize("sig, which, n", SCENARIOS, ids=["-".join(s) for s in SCENARIOS])
def test_killed_run_loses_nothing_and_resumes_to_the_same_results(sig, which, n, uninterrupted, tmp_path):
    expected, walls = uninterrupted
    rng = random.Random(f"{SEED}-{sig}-{which}-{n}")
    delay = rng.uniform(0.3, 0.9 * walls[n])  # from start-up to the report
    context = f"{sig} to the {which} at {delay:.2f} s (-n {n}; CROSSBN_KILL_SEED={SEED})"
    out = tmp_path / "run"
    proc = _start(out, n)
    started = time.monotonic()
    try:
        time.sleep(max(0.0, delay - 0.2))
        victim = _target(proc, which, n)
        if victim is not None:
            time.sleep(max(0.0, delay - (time.monotonic() - started)))
            tree = [victim, *victim.children(recursive=True)] if which == "controller" else []
            try:
                victim.send_signal(getattr(signal, sig))
            except psutil.NoSuchProcess:
                victim = None
        output, _ = proc.communicate(timeout=300)  # a hang fails here
    finally:
        if proc.poll() is None:
            proc.kill()
    context += "" if victim is not None else " (the run ended before the kill)"
    if victim is not None and which == "controller":
        _, alive = psutil.wait_procs(tree, timeout=30)  # nothing of the run outlives it
        assert not alive, f"{context}: still running: {[p.cmdline()[:3] for p in alive]}"
    _lines_are_records(out, torn_allowed=sig == "SIGKILL", context=context)

    if not (out / "run.json").exists():  # killed before the run began: nothing finished, nothing to resume
        assert _lines_are_records(out, True, context) == 0, context
        resumed = _run("run", "--resume", str(out), "-n", "0", "--no-conventions")
        assert resumed.returncode == 2 and "no run.json" in resumed.stderr, context
        return
    info = json.loads((out / "run.json").read_text())
    print(
        f"{context}: exit {proc.returncode}, complete {info['complete']}, "
        f"{len(read(out / 'results.jsonl')) if (out / 'results.jsonl').exists() else 0} records"
    )
    report = _run("report", str(out))
    assert report.returncode == 0, f"{context}: {report.stdout}{report.stderr}"
    page = (out / "index.html").read_text(encoding="utf-8")
    assert ('id="incomplete"' in page) == (not info["complete"]), f"{context}: complete={info['complete']}"
    # The signal ended the controller only if it was sent there and the status is the signal's: a
    # controller that exited first (the kill then reached a zombie) has its own status.
    ended_by_the_signal = victim is not None and which == "controller" and proc.returncode == -getattr(signal, sig)
    if info["complete"]:  # the kill came after the end, or took a worker xdist replaced (or crossbn restarted)
        # What `complete` promises holds wherever the kill landed: the records are the whole run's now,
        # before any resume (a killed backend worker's test is a crash record, which a resume reruns).
        if which != "backend-worker":
            got = [stable(r) for r in read(out / "results.jsonl")]
            assert got == expected, f"{context}: run.json says complete, but the records are not the whole run"
        # Its exit status is the process's own (0: findings are not failures; 1), unless the signal
        # reached the controller between run.json's last write and its exit: the run is complete and
        # the status is the signal's (a SIGKILL's -9; SIGTERM and SIGINT, no longer turned into an
        # interruption once the run is written, end it as -15 and -2).
        assert proc.returncode in (0, 1) or ended_by_the_signal, f"{context}: exit {proc.returncode}\n{output[-3000:]}"

    resumed = _run("run", "--resume", str(out), "-n", "0", "--no-conventions")
    assert resumed.returncode == 0, f"{context}: {resumed.stdout[-3000:]}{resumed.stderr[-3000:]}"
    assert json.loads((out / "run.json").read_text())["complete"], context
    got = [stable(r) for r in read(out / "results.jsonl")]
    assert [(r["case_id"], r["backend"]) for r in got] == [(r["case_id"], r["backend"]) for r in expected], context
    assert got == expected, context
    _lines_are_records(out, torn_allowed=False, context=context + ", after the resume")


def test_resume_of_a_finished_run_runs_nothing(uninterrupted, tmp_path):
    """A whole run resumed: no test runs, the records stay as they were."""
    out = tmp_path / "run"
    first = _run(
        "run", "--suite", "smoke", "--backends", "onnxruntime-opset15", "-n", "0", "--out", str(out), "--no-conventions"
    )
    assert first.returncode == 0, first.stderr
    before = [stable(r) for r in read(out / "results.jsonl")]
    again = _run("run", "--resume", str(out), "-n", "0", "--no-conventions")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "deselected" in again.stdout and " passed" not in again.stdout and " failed" not in again.stdout
    assert [stable(r) for r in read(out / "results.jsonl")] == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resume", "{missing}"], "no such folder"),
        (["--resume", "{empty}"], "no run.json there"),
        (["--resume", "{empty}", "--suite", "smoke"], "--suite cannot be given with --resume"),
    ],
)
def test_resume_refuses_what_it_cannot_finish(args, message, tmp_path):
    (tmp_path / "empty").mkdir()
    args = [a.format(missing=tmp_path / "nope", empty=tmp_path / "empty") for a in args]
    proc = _run("run", *args, "-n", "0", "--no-conventions")
    assert proc.returncode == 2 and message in proc.stderr, proc.stdout + proc.stderr
