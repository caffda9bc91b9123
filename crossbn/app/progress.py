"""Live progress of a conformance run: cases done / total, findings so far,
elapsed and remaining time (`--crossbn-progress`, env CROSSBN_PROGRESS).

Modes: `rich` (a live bar on a terminal), `plain` (a line now and then, for
logs and CI), `auto` (rich when stdout is a terminal, else plain), `off`
(plain pytest's default: its output is unchanged). `crossbn run` asks for
`auto`.

Everything happens on the controller: with pytest-xdist the workers' reports
arrive there (with the verdict each test carries in `user_properties`), and
the number of tests comes from the workers' collection. While progress is
shown, pytest's per-test letters (".F.s") are left out, as they would garble
it; its outcome counts and final "N failed, M passed" line are kept. xdist's
start-up line is shown only with CROSSBN_VERBOSE, once (`XdistStartLine`).
"""

from __future__ import annotations

import os
import sys
import time

import pytest

MODES = ("auto", "rich", "plain", "off")
PLAIN_EVERY_S = 10.0  # plain mode: at most one line per this many seconds...
PLAIN_STEPS = 10  # ...besides one at each 1/PLAIN_STEPS of the run, and one at the end


def resolve(mode: str, stream=None) -> str:
    """The mode to use: `auto` becomes rich on a terminal, plain elsewhere."""
    mode = (mode or "off").strip().lower()
    if mode not in MODES:
        raise pytest.UsageError(f"--crossbn-progress: unknown mode {mode!r}; one of {', '.join(MODES)}")
    if mode == "auto":
        stream = sys.stdout if stream is None else stream
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        return "rich" if tty else "plain"
    return mode


def clock_text(seconds: float) -> str:
    """0:45, 12:03, 1:02:03."""
    s = max(0, int(round(seconds)))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Tally:
    """Tests done and findings, counted once per test from its reports."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.total: int | None = None
        self.started = clock()
        self.done: set[str] = set()
        self.finding_ids: set[str] = set()

    @property
    def findings(self) -> int:
        return len(self.finding_ids)

    def add(self, report) -> bool:
        """Count `report`; True when it finishes a test not counted before.
        A test is done at its call report, or at a setup report that did not
        pass (a skip mark, an error in a fixture); xdist's report of a test
        whose worker crashed has when="???"."""
        from crossbn.spec.verdicts import FAILING

        for key, data in getattr(report, "user_properties", ()):
            if key == "crossbn" and isinstance(data, dict) and data.get("verdict") in FAILING:
                self.finding_ids.add(report.nodeid)
        if report.when == "teardown" or (report.when != "call" and report.passed):
            return False
        if report.nodeid in self.done:
            return False
        self.done.add(report.nodeid)
        return True

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float | None:
        """elapsed / done x (total - done); None before the first test is done."""
        n = len(self.done)
        if not n or self.total is None:
            return None
        return self.elapsed() / n * max(self.total - n, 0)


def _findings(n: int) -> str:
    return f"{n} finding{'' if n == 1 else 's'}"


def plain_line(done: int, total: int, findings: int, elapsed: float, remaining: float | None) -> str:
    """`crossbn: 120/382 done (31%), 30 findings, 0:45 elapsed, ~1:40 left`"""
    pct = done * 100 // total if total else 100
    line = f"crossbn: {done}/{total} done ({pct}%), {_findings(findings)}, {clock_text(elapsed)} elapsed"
    if remaining is not None and done < total:
        line += f", ~{clock_text(remaining)} left"
    return line


class PlainProgress:
    """A line at most every PLAIN_EVERY_S seconds, at every 1/PLAIN_STEPS of
    the run, and at the end; `write` takes one line."""

    def __init__(self, tally: Tally, write) -> None:
        self.tally = tally
        self.write = write
        self.last_time: float | None = None
        self.last_step = 0
        self.last_state = None

    def start(self) -> None:
        self.last_time = self.tally.clock()

    def update(self) -> None:
        t = self.tally
        if not t.total:
            return
        now = t.clock()
        step = len(t.done) * PLAIN_STEPS // t.total
        if len(t.done) >= t.total or step > self.last_step or now - (self.last_time or t.started) >= PLAIN_EVERY_S:
            self._emit(now, step)

    def stop(self) -> None:
        t = self.tally
        if t.total and self.last_state != (len(t.done), t.findings):  # nothing for a run of no tests
            self._emit(t.clock(), self.last_step)

    def _emit(self, now: float, step: int) -> None:
        t = self.tally
        self.last_time, self.last_step = now, max(step, self.last_step)
        self.last_state = (len(t.done), t.findings)
        self.write(plain_line(len(t.done), t.total, t.findings, now - t.started, t.remaining()))


class RichProgress:
    """A rich.progress bar. It writes to its own duplicate of stdout's file
    descriptor: without xdist the tests run in this process, and pytest's
    capture redirects sys.stdout and fd 1 while each runs, which would
    swallow the bar's refreshes (they come from rich's refresh thread)."""

    def __init__(self, tally: Tally, stream=None) -> None:
        self.tally = tally
        self.stream = stream
        self.progress = self.task = self._file = None

    def start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
        from rich.text import Text

        tally = self.tally

        class Times(ProgressColumn):
            def render(self, task):  # rendered at every refresh, so the clock ticks between tests
                left = tally.remaining()
                text = f"{clock_text(tally.elapsed())} elapsed"
                if left is not None and len(tally.done) < (tally.total or 0):
                    text += f", ~{clock_text(left)} left"
                return Text(text, style="progress.elapsed")

        stream = self.stream
        if stream is None:
            try:
                stream = self._file = os.fdopen(
                    os.dup(sys.stdout.fileno()),
                    "w",
                    errors="replace",
                    encoding=getattr(sys.stdout, "encoding", None) or "utf-8",
                )
            except (AttributeError, OSError, ValueError):  # no real stdout (e.g. pytester in-process)
                stream = sys.stdout
        console = Console(file=stream, stderr=False)
        self.progress = Progress(
            TextColumn("crossbn"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[bold red]{task.fields[findings]}"),
            Times(),
            console=console,
            redirect_stdout=False,
            redirect_stderr=False,
            refresh_per_second=4,
            get_time=tally.clock,
        )
        self.task = self.progress.add_task("crossbn", total=tally.total, findings=_findings(0))
        self.progress.start()

    def update(self) -> None:
        if self.progress is not None:
            self.progress.update(
                self.task,
                completed=len(self.tally.done),
                total=self.tally.total,
                findings=_findings(self.tally.findings),
            )

    def stop(self) -> None:
        """Leaves the final state on screen; safe to call twice."""
        if self.progress is None:
            return
        self.update()
        progress, self.progress = self.progress, None
        progress.stop()
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None


class ProgressHooks:
    """The pytest side, on the controller only. The total is known at
    collection (with xdist: when the first worker has collected); the display
    starts when the first test starts, after pytest's (and xdist's) own
    start-up lines."""

    def __init__(self, config, mode: str, clock=time.monotonic) -> None:
        self.config = config
        self.tally = Tally(clock)
        self.display = RichProgress(self.tally) if mode == "rich" else PlainProgress(self.tally, self._write_line)
        # -v asks for a line per test: those stay (and the display is plain lines, see register)
        self.active = (config.getoption("verbose", 0) or 0) <= 0  # per-test letters left out
        self.started = False

    def _terminal(self):
        return self.config.pluginmanager.get_plugin("terminalreporter")

    def _write_line(self, line: str) -> None:
        tr = self._terminal()
        if tr is not None:
            tr.ensure_newline()
            tr.write_line(line)
            tr.flush()
        else:
            print(line, flush=True)

    def add_total(self, n: int) -> None:
        self.tally.total = (self.tally.total or 0) + n

    def _start(self) -> None:
        if self.started or self.tally.total is None:
            return
        self.started = True
        tr = self._terminal()
        if tr is not None and isinstance(self.display, RichProgress):
            tr.ensure_newline()  # what pytest wrote so far comes first; the bar has a line of its own
            tr.flush()
        self.display.start()

    def pytest_sessionstart(self, session):
        tr = self._terminal()
        if tr is not None and self.active:
            tr.showfspath = False  # no "path/test_x.py " before the (now empty) letters

    def pytest_collection_finish(self, session):
        if self.tally.total is None:  # not called on an xdist controller, which collects nothing
            self.add_total(len(session.items))

    def pytest_runtest_logstart(self, nodeid, location):
        self._start()

    def pytest_runtest_logreport(self, report):
        if self.tally.add(report):
            self._start()
            self.display.update()

    @pytest.hookimpl(wrapper=True)
    def pytest_report_teststatus(self, report, config):
        result = yield
        if not self.active or not result:
            return result
        return (result[0], "", "")  # the category still counts in "N failed, M passed"

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session):
        """Before pytest's summary: the final state stays, the display goes."""
        self.active = False  # the short test summary (-r) asks for the words again
        self.display.stop()

    def pytest_unconfigure(self, config):
        self.display.stop()


class XdistHooks:
    """Registered only when xdist distributes: pluggy rejects this hook's name
    when xdist is not loaded."""

    def __init__(self, hooks: ProgressHooks, each: bool) -> None:
        self.hooks = hooks
        self.each = each  # --dist each: every node runs every test
        self.seen = False

    def pytest_xdist_node_collection_finished(self, node, ids):
        if self.each or not self.seen:  # otherwise all nodes collect the same tests
            self.seen = True
            self.hooks.add_total(len(ids))


class XdistStartLine:
    """xdist's worker-status line, shown by it while its workers start. Under
    `crossbn run`'s -q it is always the same "bringing up nodes...", and where
    stdout is no terminal xdist writes it as a line of its own twice: when the
    workers are set up and again when they have collected. Quiet (no
    CROSSBN_VERBOSE), it is not shown; verbose, once. xdist has no option for
    it, so its reporter's two writers are wrapped. Registered only when xdist
    distributes; its reporter exists from xdist's sessionstart, which runs last."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose

    def pytest_sessionstart(self, session):
        reporter = session.config.pluginmanager.get_plugin("terminaldistreporter")
        if reporter is None or not hasattr(reporter, "ensure_show_status") or not hasattr(reporter, "rewrite"):
            return  # another xdist: its own output stays as it is
        if not self.verbose:
            reporter.ensure_show_status = lambda: None
            reporter.rewrite = lambda line, newline=False: None  # the same line in place, on a terminal
            return
        shown: set[str] = set()
        show = reporter.ensure_show_status

        def once():
            line = reporter.getstatus()
            if line not in shown:
                shown.add(line)
                show()

        reporter.ensure_show_status = once


def quiet_xdist(config) -> None:
    """Called from the plugin's pytest_configure on the controller."""
    from crossbn.execution.quiet import verbose

    if config.getoption("dist", "no") not in ("no", None):
        config.pluginmanager.register(XdistStartLine(verbose()), "crossbn-xdist-start")


def register(config, mode: str) -> ProgressHooks | None:
    """Called from the plugin's pytest_configure on the controller."""
    explicit = (mode or "").strip().lower() != "auto"
    mode = resolve(mode)
    if mode == "off":
        return None
    if mode == "rich" and not explicit and (config.getoption("verbose", 0) or 0) > 0:
        mode = "plain"  # a line per test was asked for; a live bar between them would be torn
    hooks = ProgressHooks(config, mode)
    config.pluginmanager.register(hooks, "crossbn-progress")
    dist = config.getoption("dist", "no")
    if dist not in ("no", None):
        config.pluginmanager.register(XdistHooks(hooks, dist == "each"), "crossbn-progress-xdist")
    return hooks
