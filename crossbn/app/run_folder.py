"""The controller's side of a run folder (`--crossbn-out DIR`): what a run writes around its records, from the
first moment to the last.

- begin: clear an earlier run's files (or, resuming, gather them), write run.json with `complete: false`, and
  make SIGTERM end the run the way Ctrl-C does.
- sync: mirror the part files' new records into DIR/results.jsonl, at most every SYNC_SECONDS.
- finish: merge the parts into DIR/results.jsonl, complete run.json, write the HTML report.

The run gets a temporary folder of its own (`crossbn-run-<pid>-<random>`, the TMPDIR of every process it
starts), which finish removes.

Design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

from crossbn.app.options import RECORDED

SYNC_SECONDS = 0.5


def _terminated(signum, frame):
    raise KeyboardInterrupt(f"crossbn: signal {signum} (SIGTERM)")


RUN_TMP_PREFIX = "crossbn-run-"


def _own_tmpdir(st) -> None:
    """A temporary folder for this run and everything it starts (see above)."""
    system = Path(tempfile.gettempdir())
    for stale in system.glob(RUN_TMP_PREFIX + "*"):
        try:
            pid = int(stale.name[len(RUN_TMP_PREFIX) :].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)  # its run was killed
        except (ValueError, PermissionError, OSError):
            continue  # not ours to judge (another user's, a name we did not make)
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:  # keep torch.compile's cache where it always is
        import getpass

        try:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(system / f"torchinductor_{getpass.getuser()}")
        except (KeyError, OSError):
            pass
    st.run.tmp = tempfile.mkdtemp(prefix=f"{RUN_TMP_PREFIX}{os.getpid()}-")
    st.run.tmp_was = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = st.run.tmp
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def drop_tmpdir(st) -> None:
    if st.run.tmp is None:
        return
    if st.run.tmp_was is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = st.run.tmp_was
    tempfile.tempdir = None
    shutil.rmtree(st.run.tmp, ignore_errors=True)
    st.run.tmp = None


def recorded_options(config, st, option) -> dict:
    """The options that select a run's tests, resolved (environment variables
    and defaults applied, files made absolute), for run.json: `crossbn run
    --resume` reruns exactly them."""

    def absolute(value):
        return str(Path(value).resolve()) if value and Path(value).is_file() else value

    options = {name: option(config, name) for name in RECORDED}
    for name in ("suite", "known", "compare"):
        options[name] = absolute(options[name])
    options["backend_modules"] = [str(Path(m).resolve()) for m in st.options.modules]
    options["known_skip"] = bool(config.getoption("crossbn_known_skip"))
    options["keyword"] = config.getoption("keyword") or ""
    options["markexpr"] = config.getoption("markexpr") or ""
    return options


def begin(config, st, option) -> None:
    """The controller's first step (pytest_configure)."""
    from crossbn.records import environment

    out = st.options.out
    if st.options.resume:
        from crossbn.records.resume import ResumeError, prepare, run_options

        try:
            run_options(out)  # a folder that can be resumed: its run.json recorded its options
            st.run.resumed = prepare(out)
        except (ResumeError, ValueError) as e:
            raise pytest.UsageError(f"--crossbn-resume: {e}") from e
    else:
        # A new run: earlier runs' files in the same folder would be merged
        # into this one's results, so they go (the folder is this run's).
        # (conventions.jsonl too: `crossbn run` observes them after the tests)
        for stale in (*out.glob("results-*.jsonl"), out / "results.jsonl"):
            stale.unlink(missing_ok=True)
    for stale in (out / "conventions.jsonl", out / "comparison.json", out / "side-by-side.json"):
        stale.unlink(missing_ok=True)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)
        st.run.restore_sigterm = True
    _own_tmpdir(st)
    st.run.started = time.monotonic()
    st.run.run_info = environment.describe(
        suite=option(config, "suite"),
        backends=list(st.options.names),
        devices=st.options.devices,
        shard=None if st.options.shard is None else "{}/{}".format(*st.options.shard),
        backend_modules=[Path(m).name for m in st.options.modules],
        argv=[str(a) for a in config.invocation_params.args],
        options=recorded_options(config, st, option),
        resumed=st.run.resumed,
    )
    environment.write(out, st.run.run_info)
    from crossbn.records.store import LiveResults

    st.run.live = LiveResults(out)


def sync(st, *, force: bool = False) -> None:
    """Mirror the parts' new records into results.jsonl (throttled)."""
    if st.run.live is None:
        return
    now = time.monotonic()
    if force or now - st.run.last_sync >= SYNC_SECONDS:
        st.run.last_sync = now
        st.run.live.sync()


def finish(session, st, exitstatus: int, option) -> None:
    """The controller's last steps (pytest_sessionfinish), each one leaving
    what is before it usable if it fails."""
    from crossbn.records import environment
    from crossbn.records.store import merge, parts

    if st.run.restore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        st.run.restore_sigterm = False
    drop_tmpdir(st)  # the workers are gone (st.close): nothing writes there any more
    from crossbn.records.results import ResultsError

    try:
        merge(
            parts(st.options.out), st.options.out / "results.jsonl"
        )  # none finished: an empty file, the run still reported
    except ResultsError as e:  # a part file damaged from outside: said, and the parts kept as they are
        st.run.report_error = f"results not merged: {e}"
        return
    from crossbn.upgrade.checks import compare_side_by_side, compare_with_baseline

    compare_with_baseline(session, st)
    compare_side_by_side(session, st)
    if st.run.run_info is not None:
        ended = exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or (
            exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and st.options.resume and st.run.done
        )
        complete = ended and not (session.shouldstop or session.shouldfail) and not st.run.crashed
        environment.finish(
            st.options.out,
            {**st.run.run_info, "crashed_tests": st.run.crashed},
            started=st.run.started,
            exit_status=int(exitstatus),
            complete=complete,
        )
    if not (st.options.out / "results.jsonl").exists():
        return
    try:
        from crossbn.report import build

        st.run.report = build([st.options.out], st.options.out)
    except Exception as e:  # noqa: BLE001 - any failure here must leave the results usable
        st.run.report_error = f"{type(e).__name__}: {e}"
