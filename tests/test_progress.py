"""Live progress of `crossbn run` (crossbn/app/progress.py): the plain line and
its throttling on a fake clock, then real runs of the command on planted
NumPy backends: plain lines when stdout is a pipe (with and without xdist),
a rich bar under a pseudo-terminal."""

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from crossbn.app.progress import PlainProgress, ProgressHooks, Tally, clock_text, plain_line, resolve

HERE = Path(__file__).parent
MODULES = [str(HERE / "backends" / "numpy_variants.py"), str(HERE / "backends" / "planted.py")]
# numpy-twopass: float32 only, so 3 matches and 3 unsupported (skips); planted-mean: 6 deviations
BACKENDS = "numpy-twopass,planted-mean"
TOTAL, FAILED, PASSED, SKIPPED = 12, 6, 3, 3
SUITE = (
    "[[group]]\nname = 'tiny'\nshape = [8, 3]\ngradients = false\n"
    "[group.axes]\nseed = [1, 2, 3]\ndtype = ['float32', 'float64']\n"
)
PLAIN = re.compile(r"^crossbn: (\d+)/(\d+) done \((\d+)%\), (\d+) findings?, (\S+) elapsed(?:, ~(\S+) left)?$")
LETTERS = re.compile(r"^[.sFEx]+\s*(\[.*\])?$")  # pytest's ".s.sFF   [12/12]"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def report(nodeid, when="call", outcome="passed", verdict=None):
    props = [("crossbn", {"verdict": verdict})] if verdict else []
    return SimpleNamespace(nodeid=nodeid, when=when, outcome=outcome, passed=outcome == "passed", user_properties=props)


# -- the line and its clock --------------------------------------------------


def test_clock_text():
    assert [clock_text(s) for s in (0, 5.4, 45, 60, 100, 3599, 3600, 3723)] == [
        "0:00",
        "0:05",
        "0:45",
        "1:00",
        "1:40",
        "59:59",
        "1:00:00",
        "1:02:03",
    ]


def test_plain_line():
    assert plain_line(120, 382, 30, 45, 100) == "crossbn: 120/382 done (31%), 30 findings, 0:45 elapsed, ~1:40 left"
    assert plain_line(1, 3, 1, 2, None) == "crossbn: 1/3 done (33%), 1 finding, 0:02 elapsed"
    assert plain_line(382, 382, 0, 68.2, 0.0) == "crossbn: 382/382 done (100%), 0 findings, 1:08 elapsed"


def test_tally_counts_each_test_once_and_findings_from_verdicts():
    clock = Clock()
    t = Tally(clock)
    t.total = 6
    assert t.remaining() is None  # nothing done yet: no estimate
    assert not t.add(report("a", "setup"))  # a passed setup: not done yet
    assert t.add(report("a", "call", "failed", "deviation"))  # a finding
    assert not t.add(report("a", "teardown"))
    assert not t.add(report("a", "teardown", "failed"))  # an error in teardown: already counted
    assert t.add(report("b", "setup", "skipped"))  # skipped at setup: done
    assert t.add(report("c", "call", "skipped", "unsupported"))  # crossbn's unsupported: a skip, no finding
    assert t.add(report("d", "call", "passed", "convention"))  # a documented difference: no finding
    assert t.add(report("e", "???", "failed"))  # xdist: the worker running it crashed
    assert (len(t.done), t.findings) == (5, 1)
    clock.t += 10
    assert t.elapsed() == 10 and t.remaining() == pytest.approx(10 / 5 * 1)


def test_plain_lines_at_each_tenth_and_not_more_often():
    clock = Clock()
    t = Tally(clock)
    lines = []
    p = PlainProgress(t, lines.append)
    t.total = 20
    p.start()
    for i in range(20):
        clock.t += 0.1
        t.add(report(f"t{i}", "call", "failed" if i % 4 == 0 else "passed", "deviation" if i % 4 == 0 else "match"))
        p.update()
    p.stop()  # the last line is the final state already: not repeated
    done = [int(PLAIN.match(line).group(1)) for line in lines]
    assert done == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert lines[-1] == "crossbn: 20/20 done (100%), 5 findings, 0:02 elapsed"


def test_plain_lines_every_ten_seconds_on_a_long_run_and_one_at_the_end():
    clock = Clock()
    t = Tally(clock)
    lines = []
    p = PlainProgress(t, lines.append)
    t.total = 1000
    p.start()
    for i in range(10):
        clock.t += 3
        t.add(report(f"t{i}", "call", "failed" if i == 0 else "passed", "crash" if i == 0 else "match"))
        p.update()
    p.stop()
    # 3 s a test: a line once 10 s have passed since the last one (t=12, 24), and the end (t=30)
    assert lines == [
        "crossbn: 4/1000 done (0%), 1 finding, 0:12 elapsed, ~49:48 left",
        "crossbn: 8/1000 done (0%), 1 finding, 0:24 elapsed, ~49:36 left",
        "crossbn: 10/1000 done (1%), 1 finding, 0:30 elapsed, ~49:30 left",
    ]


def test_resolve():
    tty, pipe = SimpleNamespace(isatty=lambda: True), SimpleNamespace(isatty=lambda: False)
    assert resolve("auto", tty) == "rich" and resolve("auto", pipe) == "plain"
    assert resolve("PLAIN", tty) == "plain" and resolve("off", tty) == "off" and resolve("rich", pipe) == "rich"
    with pytest.raises(pytest.UsageError, match="unknown mode 'loud'"):
        resolve("loud")


def test_letters_are_left_out_but_the_outcome_is_kept():
    config = SimpleNamespace(
        getoption=lambda name, default=None: default, pluginmanager=SimpleNamespace(get_plugin=lambda name: None)
    )
    hooks = ProgressHooks(config, "plain")

    def teststatus(result):
        gen = hooks.pytest_report_teststatus(report("a"), config)
        next(gen)
        with pytest.raises(StopIteration) as stop:
            gen.send(result)
        return stop.value.value

    assert teststatus(("failed", "F", "FAILED")) == ("failed", "", "")
    assert teststatus(("", "", "")) == ("", "", "")
    hooks.pytest_sessionfinish(None)  # the short test summary after it wants the words back
    assert teststatus(("failed", "F", "FAILED")) == ("failed", "F", "FAILED")


# -- real runs -----------------------------------------------------------------


def _env(**extra):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CROSSBN_PROGRESS", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "CI")
    }
    return {**env, **extra}


def _argv(tmp_path, *args):
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE)
    argv = [
        sys.executable,
        "-m",
        "crossbn",
        "run",
        "--suite",
        str(suite),
        "--backends",
        BACKENDS,
        "--out",
        str(tmp_path / "out"),
        "--no-conventions",
    ]
    for m in MODULES:
        argv += ["--backend-module", m]
    return argv + list(args)


def _check_summary(text):
    assert "crossbn verdicts" in text
    # pytest's last line, e.g. "6 failed, 3 passed, 3 skipped in 1.36s" (a ", 1 warning" may come in between)
    assert re.search(
        rf"^{FAILED} failed, {PASSED} passed, {SKIPPED} skipped(, \d+ warnings?)? in [\d.]+s", text, re.M
    ), text


@pytest.mark.parametrize("n", ["0", pytest.param("2", marks=pytest.mark.slow)])  # -n 2 starts two xdist workers
def test_plain_progress_when_stdout_is_not_a_terminal(tmp_path, n):
    proc = subprocess.run(_argv(tmp_path, "-n", n), capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    progress = [PLAIN.match(line) for line in lines if line.startswith("crossbn: ")]
    assert progress and all(progress), lines
    last = progress[-1]
    assert (int(last.group(1)), int(last.group(2)), last.group(3)) == (TOTAL, TOTAL, "100")
    assert int(last.group(4)) == FAILED and last.group(6) is None  # findings = failed tests; no time left
    assert [int(m.group(1)) for m in progress] == sorted(int(m.group(1)) for m in progress)
    assert not [line for line in lines if LETTERS.match(line)], lines
    _check_summary(proc.stdout)
    # the progress comes before pytest's summary
    assert lines.index(last.group(0)) < next(i for i, x in enumerate(lines) if "crossbn verdicts" in x)


def test_progress_off_keeps_pytests_letters(tmp_path):
    """The check above has teeth: without progress (here from the environment) the letters are there."""
    proc = subprocess.run(
        _argv(tmp_path, "-n", "0"), capture_output=True, text=True, timeout=120, env=_env(CROSSBN_PROGRESS="off")
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [line for line in proc.stdout.splitlines() if LETTERS.match(line)] and "[12/12]" in proc.stdout
    assert not re.search(r"^crossbn: \d+/", proc.stdout, re.M)
    _check_summary(proc.stdout)


def test_rich_forced_on_a_pipe_prints_its_final_state(tmp_path):
    proc = subprocess.run(
        _argv(tmp_path, "-n", "0", "--progress", "rich"), capture_output=True, text=True, timeout=120, env=_env()
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    final = [line for line in proc.stdout.splitlines() if f"{TOTAL}/{TOTAL}" in line]
    assert len(final) == 1 and f"{FAILED} findings" in final[0] and "elapsed" in final[0], proc.stdout
    assert not PLAIN.match(final[0])
    _check_summary(proc.stdout)


def _run_in_pty(argv, env, timeout=120):
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    out, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every process holding the terminal has exited
                break
            if not data:
                break
            out.append(data)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    return proc.returncode, b"".join(out).decode("utf-8", "replace")


@pytest.mark.parametrize("n", ["0", pytest.param("2", marks=pytest.mark.slow)])  # -n 2 starts two xdist workers
def test_rich_bar_on_a_terminal(tmp_path, n):
    code, raw = _run_in_pty(_argv(tmp_path, "-n", n), _env(TERM="xterm-256color", COLUMNS="120"))
    text = ANSI.sub("", raw)
    assert code == 0, text
    frames = [f for f in re.split(r"[\r\n]+", text) if f.startswith("crossbn ") and "findings" in f]
    assert frames and "━" in frames[-1], text  # auto chose rich: a bar, redrawn in place
    assert f"{TOTAL}/{TOTAL}" in frames[-1] and f"{FAILED} findings" in frames[-1], frames
    assert "\r" in raw.split("crossbn verdicts")[0]  # redrawn, not printed line by line
    # nothing else written into the bar's line (pytest's letters would be: "... 0:00 elapsed.s.s")
    assert all(re.search(r"elapsed(, ~\S+ left)?$", f.rstrip()) for f in frames), frames
    assert not re.search(r"^crossbn: \d+/", text, re.M)
    assert not [line for line in text.splitlines() if LETTERS.match(line.strip())], text
    _check_summary(text)
    assert text.rindex(f"{TOTAL}/{TOTAL}") < text.index("crossbn verdicts")  # the bar is gone before the summary
