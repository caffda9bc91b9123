"""The pytest plugin (entry point `pytest11: crossbn`): options, parametrization, hooks.

Thin on purpose: it parses the --crossbn-* options (each with a CROSSBN_* environment fallback), parametrizes
`crossbn_target` over case x backend x device, hands each test to `judge.py` (a model case of the `models` suite
to `models/judge.py`), writes the records, and on the controller merges the workers' files and prints the
summary. Frameworks are never imported here; only worker processes import them.

The options and design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crossbn.app.options import OPTIONS as _OPTIONS, option as _option
from crossbn.app.session import Session as _Session

_STATE = pytest.StashKey()
_CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
# the conformance test module of each kind of suite
_SUITE_MODULES = {"batchnorm": "test_batchnorm.py", "models": "test_models.py"}


def pytest_addoption(parser):
    group = parser.getgroup("crossbn", "crossbn: cross-backend BatchNorm conformance")
    for opt in _OPTIONS:  # declared once, in crossbn/app/options.py
        kind = {"switch": {"action": "store_true", "default": False}, "list": {"action": "append", "default": []}}
        group.addoption(
            opt.pytest_flag,
            dest=f"crossbn_{opt.name}",
            help=f"{opt.help} {opt.where()}",
            **kind.get(opt.kind, {"default": None, "metavar": opt.metavar, "choices": opt.choices or None}),
        )


def _state(config) -> _Session:
    if _STATE not in config.stash:
        from crossbn.backends import BackendError

        try:
            config.stash[_STATE] = _Session(config)
        except BackendError as e:
            raise pytest.UsageError(f"--crossbn-backends: {e}") from e
    return config.stash[_STATE]


def _is_controller(config) -> bool:
    return not hasattr(config, "workerinput")


def _wants_conformance(config) -> bool:
    """True for a conformance run (a --crossbn-* option, or crossbn.conformance
    among the arguments); crossbn's own tests and other projects' sessions
    are left alone even when CROSSBN_* variables are exported."""
    if any(config.getoption(f"crossbn_{o.name}") for o in _OPTIONS if o.kind == "value"):
        return True
    return any("conformance" in str(a) for a in config.args)


def pytest_configure(config):
    config.addinivalue_line("markers", "crossbn: a cross-backend BatchNorm conformance test (case x backend x device)")
    config.addinivalue_line("markers", "crossbn_backend(name): the backend a conformance test runs on")
    if not _wants_conformance(config):
        return
    st = _state(config)  # bad options and catalogues fail here, before any collection
    config.pluginmanager.register(_SummaryHooks(st), "crossbn-summary")
    if _is_controller(config):
        from crossbn.app.progress import quiet_xdist, register as register_progress

        register_progress(config, _option(config, "progress"))  # crossbn/app/progress.py; nothing when "off"
        quiet_xdist(config)  # xdist's start-up line: only with CROSSBN_VERBOSE, and once
    if _is_controller(config) and st.options.out is not None:
        from crossbn.app import run_folder

        run_folder.begin(config, st, _option)
    if st.options.resume and st.options.out is not None:
        from crossbn.records.resume import done

        st.run.done = done(st.options.out)  # every process: the controller gathered them in begin, before workers start
        if _is_controller(config):
            _summarize_earlier(st)


def _summarize_earlier(st) -> None:
    """Resuming: the records from before the interruption count in the summary
    as the tests run now do, so it covers the whole run folder."""
    from crossbn.records.results import read
    from crossbn.records.resume import EARLIER

    path = st.options.out / EARLIER
    earlier = read(path) if path.is_file() else []
    for rec in earlier:
        st.run.summary.add(summary_data(rec))
    st.run.earlier = len(earlier)


def summary_data(rec: dict) -> dict:
    """What the summary counts of one record; it travels on the test's report
    (`user_properties`), so the summary is the same with or without xdist."""
    worst = rec.get("worst") or {}
    return {
        "backend": rec["backend"],
        "device": rec["device"],
        "verdict": rec["verdict"],
        "case": rec.get("pytest_id", rec.get("case_id", "")),
        "ratio": worst.get("ratio"),
        "observable": worst.get("observable"),
        "version": rec.get("version", ""),
        "reason": rec["reason"].splitlines()[0] if rec.get("reason") else "",
        "cross_device": (rec.get("cross_device") or {}).get("verdict"),
        "cross_version": rec.get("cross_version") and [rec["cross_version"][k] for k in ("against", "verdict")],
        "known": (rec.get("known") or {}).get("entry"),
        "unjudged": rec.get("unjudged", 0),
        "cached": bool(rec.get("cached")),
        "diagnosed": ((rec.get("diagnosis") or {}).get("source") or {}).get("how"),
    }


def _user_named_dist(config) -> bool:
    named = [
        *map(str, config.invocation_params.args),
        os.environ.get("PYTEST_ADDOPTS", ""),
        *map(str, config.getini("addopts")),
    ]
    return any(a.startswith("--dist") or a == "-d" for text in named for a in text.split())


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under -n, one unit of work per backend (crossbn/execution/schedule.py), in
    place of xdist's default test-by-test `load`; a --dist the user names
    is kept."""
    if not _wants_conformance(config) or config.option.dist != "load" or _user_named_dist(config):
        return None
    from crossbn.execution.schedule import BackendScheduling, scope_of

    st = _state(config)
    return BackendScheduling(config, log, scope_of(st.options.backends, st.options.devices))


def _backend_of(item) -> str | None:
    mark = item.get_closest_marker("crossbn_backend")
    return mark.args[0] if mark is not None else None


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """The next test is another backend's: this backend's tests are done here
    (tests run backend by backend, pytest_generate_tests), so its worker
    process goes, and with it its framework's memory."""
    if nextitem is None or not _wants_conformance(item.config):
        return
    here, after = _backend_of(item), _backend_of(nextitem)
    if here is not None and after is not None and here != after:
        st = _state(item.config)
        if st._pool is not None:
            st._pool.close()


def pytest_ignore_collect(collection_path, config):
    """Collect only the conformance module of the suite's kind."""
    path = Path(collection_path)
    if (
        path.name not in _SUITE_MODULES.values()
        or path.resolve().parent != _CONFORMANCE
        or not _wants_conformance(config)
    ):
        return None
    return True if path.name != _SUITE_MODULES[_state(config).options.kind] else None


def pytest_report_header(config):
    if not _wants_conformance(config):
        return None
    st = _state(config)
    lines = [
        f"crossbn: suite {_option(config, 'suite')} ({len(st.options.cases)} cases), devices {','.join(st.options.devices)}, "
        f"results {st.options.out / 'results.jsonl' if st.options.out else '(not written: no --crossbn-out)'}"
    ]
    for name, b in st.options.backends.items():
        why = b.available()
        versions = f"under {b.interpreter}" if b.interpreter else ", ".join(f"{k} {v}" for k, v in b.versions().items())
        against = f"  (compared with {b.compare_with})" if b.compare_with else ""
        lines.append(f"  {name:18s} {versions}{against}" + (f"  [UNAVAILABLE: {why}]" if why else ""))
    return lines


def pytest_generate_tests(metafunc):
    if "crossbn_target" not in metafunc.fixturenames:
        return
    st = _state(metafunc.config)
    params = []
    # Backend by backend, not case by case: a worker then runs one framework
    # for a long stretch and keeps its caches (and torch.compile's graphs)
    # warm. Interleaving backends per case would let a worker share a case's
    # oracle between backends, but measured slower: 59 cases on 21 backends,
    # -n 2, took 285 s backend-major, 331 s in blocks of 16 cases and 342 s
    # case by case (benchmarks/README.md, "Test order").
    for name in st.options.backends:
        marks = [pytest.mark.crossbn, pytest.mark.crossbn_backend(name)]
        for case in st.options.cases:
            if not st.options.backends[name].applies(case):
                continue  # another framework's switches: not a case for this backend
            for device in st.options.devices:
                params.append(pytest.param((case, name, device), id=f"{case.pytest_id}-{name}-{device}", marks=marks))
    metafunc.parametrize("crossbn_target", params)


def pytest_collection_modifyitems(config, items):
    """--crossbn-shard K/N: keep this shard's conformance tests (crossbn/execution/shard.py);
    --crossbn-resume: drop the tests the run folder already has records of."""
    if not _wants_conformance(config):
        return
    st = _state(config)
    if st.options.shard is None and not st.run.done:
        return
    from crossbn.execution.shard import in_shard

    def wanted(item) -> bool:
        if item.get_closest_marker("crossbn") is None:
            return True
        case, backend, device = item.callspec.params["crossbn_target"]
        if (case.id, backend, device) in st.run.done:
            return False
        return st.options.shard is None or in_shard(item.name, *st.options.shard)

    keep, drop = [], []
    for item in items:
        (keep if wanted(item) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def crossbn_check(request):
    """Callable that judges one (case, backend, device), records it, and turns
    the verdict into a pytest outcome (skip, pass, or fail with the details)."""
    st = _state(request.config)

    def check(case, backend: str, device: str) -> dict:
        from crossbn.records.results import failure_message
        from crossbn.spec.network_case import is_model_case
        from crossbn.spec.verdicts import FAILING, Verdict

        limits = {}
        if is_model_case(case):
            from crossbn.verdict.network_judge import judge_model as judge, model_record as make_record
        else:
            from crossbn.records.results import make_record
            from crossbn.verdict.judge import judge

            # a model case's memory is its network's, not estimated here; its layers are not fingerprinted
            limits = {"limits": st.options.limits, "causes": st.options.causes, "cache": st.options.cache}
        try:
            rec = judge(case, backend, st.options.backends[backend], device, st.pool, st.options.timeout, **limits)
        except Exception as e:  # crossbn's own failure: still leave a record, then report it
            st.record(
                make_record(
                    case=case,
                    backend=backend,
                    device=device,
                    verdict="crash",
                    reason=f"crossbn internal error: {type(e).__name__}: {e}",
                )
            )
            raise
        known = None
        if rec["verdict"] in FAILING and st.options.known:
            from crossbn.records.known import first_match

            known = first_match(st.options.known, rec)
            if known is not None:
                rec["known"] = {"entry": known.index, "reason": known.reason, "link": known.link}
        st.record(rec)
        request.node.user_properties.append(("crossbn", summary_data(rec)))
        if rec["verdict"] == Verdict.UNSUPPORTED:
            pytest.skip(f"unsupported: {rec['reason']}")
        if known is not None:
            why = f"known difference #{known.index}: {known.reason}" + (f" ({known.link})" if known.link else "")
            (pytest.skip if st.options.known_skip else pytest.xfail)(why)
        if rec["verdict"] in FAILING:
            pytest.fail(failure_message(rec), pytrace=False)
        return rec

    return check


class _SummaryHooks:
    """Registered per session: pytest_runtest_logreport gets no config, so
    the state it fills is bound here instead of living in a global."""

    def __init__(self, st):
        self.st = st
        self.summary = st.run.summary

    def pytest_runtest_logreport(self, report):
        # Runs on the controller for xdist workers' reports too; the data
        # travels on the report, so the summary is the same with or without xdist.
        for key, data in getattr(report, "user_properties", ()):
            if key == "crossbn" and report.when in ("call", "setup"):
                self.summary.add(data)
        if report.when == "teardown" or report.when == "???":
            from crossbn.app.run_folder import sync

            sync(self.st)  # the controller's live results.jsonl (nothing elsewhere)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem, report, sched):
        """xdist: a worker died under this test (a kill, or crossbn itself):
        no record; the run is incomplete and --resume runs it again."""
        self.st.run.crashed.append(crashitem)


def pytest_sessionfinish(session, exitstatus):
    if not _wants_conformance(session.config):
        return
    st = _state(session.config)
    st.close()
    if _is_controller(session.config) and st.options.out is not None and st.options.out.exists():
        from crossbn.app import run_folder

        run_folder.finish(session, st, int(exitstatus), _option)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _wants_conformance(config):
        return
    st = _state(config)
    lines = st.run.summary.lines()
    if lines:
        terminalreporter.section("crossbn verdicts")
    for line in lines:
        terminalreporter.write_line(line)
    if st.run.resumed is not None and lines:
        total = sum(sum(c.values()) for c in st.run.summary.counts.values())
        again = st.run.resumed["rerun"]
        terminalreporter.write_line(
            f"resumed: {st.run.earlier} results from before the interruption, {total - st.run.earlier} run now"
            + (f" ({again} crash/timeout results among them run again)" if again else "")
            + f"; the summary covers all {total}"
        )
    if st.options.known:
        used = st.run.summary.known_used
        terminalreporter.write_line(
            f"known differences: {sum(used.values())} finding(s) matched {len(used)} of {len(st.options.known)} entries"
        )
        scope = (
            st.options.names,
            st.options.devices,
            {getattr(c, "dtype", "") for c in st.options.cases},
            [i for c in st.options.cases for i in (c.id, c.pytest_id)],
        )
        unused = [k for k in st.options.known if k.index not in used]
        for k in unused:
            if k.in_scope(*scope):
                terminalreporter.write_line(f"  matched nothing: {k.label()}: {k.reason}", yellow=True)
        elsewhere = sum(not k.in_scope(*scope) for k in unused)
        if elsewhere:
            terminalreporter.write_line(
                f"  {elsewhere} more matched nothing: about backends, devices, dtypes or cases this run did not include"
            )
    if st.options.out is not None and (lines or st.run.report_error):
        terminalreporter.write_line(f"results: {st.options.out / 'results.jsonl'}")
        from crossbn.upgrade.checks import summary_lines

        for text, red in summary_lines(st):
            terminalreporter.write_line(text, red=red)
        if st.run.report is not None:
            terminalreporter.write_line(f"report: {st.run.report}")
        if st.run.report_error:
            terminalreporter.write_line(f"report: NOT written: {st.run.report_error}", red=True)


def pytest_unconfigure(config):
    """The run's own TMPDIR goes even when the session never finished (run_folder.py)."""
    if _STATE in config.stash:
        from crossbn.app.run_folder import drop_tmpdir

        drop_tmpdir(config.stash[_STATE])
