"""The pytest plugin (entry point `pytest11: crossbn`): options, parametrization, hooks.

Thin on purpose: it parses options, parametrizes `crossbn_target` over
case x backend x device, hands each test to `judge.py` (a model case of the
`models` suite to `models/judge.py`), writes the records, and on the
controller merges the workers' files and prints the summary. Of the
conformance test modules only the suite's kind is collected:
test_batchnorm.py for BatchNorm catalogues, test_models.py for model ones.
Frameworks are never imported here; only worker processes import them.

Options (each with a CROSSBN_* environment fallback):
  --crossbn-suite S            catalogue name in cases/ or a .toml path   (default: default)
  --crossbn-backends A,B|all   backends to run                          (default: all installed)
  --crossbn-devices cpu,cuda   devices                                   (default: cpu)
  --crossbn-out DIR            write DIR/results.jsonl, DIR/run.json and the HTML report
                               DIR/index.html (controller only)          (default: none)
  --crossbn-backend-module F   a .py file defining extra Backend classes (repeatable)
  --crossbn-timeout SECONDS    per-case limit before a worker is killed  (default: 300)
  --crossbn-progress MODE      live progress: auto|rich|plain|off        (default: off; `crossbn run`: auto)
  --crossbn-shard K/N          run only shard K of N (crossbn/shard.py)  (default: all)
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest

_OPTIONS = (
    # (name, env, default, help)
    ("suite", "CROSSBN_SUITE", "default", "case catalogue: a name in cases/ or a path to a .toml file"),
    ("backends", "CROSSBN_BACKENDS", "all", "comma-separated backends, or 'all' (every installed one); "
                                         "NAME@/path/to/python runs one under another interpreter"),
    ("devices", "CROSSBN_DEVICES", "cpu", "comma-separated devices: cpu, cuda"),
    ("out", "CROSSBN_OUT", None, "directory for results-<worker>.jsonl and the merged results.jsonl"),
    ("timeout", "CROSSBN_TIMEOUT", "300", "seconds a backend may take for one case before its worker is killed"),
    ("compare", "CROSSBN_COMPARE", None, "a baseline name under baselines/ (or results) to compare the run "
                                         "with: comparison.json, the report's comparison page; regressions fail"),
    ("known", "CROSSBN_KNOWN", None, "a TOML file of known differences (crossbn/known.py): matching findings "
                                     "are xfails, not failures"),
    ("progress", "CROSSBN_PROGRESS", "off", "live progress: auto (rich on a terminal, else plain), rich, plain, off"),
    ("shard", "CROSSBN_SHARD", None, "K/N: run only shard K of N (1 <= K <= N), for CI sharding or several "
                                     "machines; the shards' results merge with `crossbn report A B`"),
)
DEVICES = ("cpu", "cuda")
_STATE = pytest.StashKey()
_CONFORMANCE = Path(__file__).resolve().parent / "conformance"
# the conformance test module of each kind of suite
_SUITE_MODULES = {"batchnorm": "test_batchnorm.py", "models": "test_models.py"}


def pytest_addoption(parser):
    group = parser.getgroup("crossbn", "crossbn: cross-backend BatchNorm conformance")
    for name, env, default, help_ in _OPTIONS:
        group.addoption(f"--crossbn-{name}", dest=f"crossbn_{name}", default=None,
                        help=f"{help_} (env {env}; default {default})")
    group.addoption("--crossbn-known-skip", dest="crossbn_known_skip", action="store_true", default=False,
                    help="known differences become skips rather than xfails (env CROSSBN_KNOWN_SKIP=1)")
    group.addoption("--crossbn-backend-module", dest="crossbn_backend_module", action="append", default=[],
                    help="a .py file whose Backend subclasses are added (repeatable; env CROSSBN_BACKEND_MODULE, "
                         "os.pathsep-separated)")


def _option(config, name: str):
    for opt, env, default, _ in _OPTIONS:
        if opt == name:
            value = config.getoption(f"crossbn_{name}")
            return value if value is not None else os.environ.get(env, default)
    raise KeyError(name)


class _State:
    """Per-process crossbn state: options resolved once, the worker pool and
    the result writer started on first use, the summary (controller)."""

    def __init__(self, config):
        from .backends import choose, discover, instantiate
        from .catalogue import CatalogueError, load_suite
        from .results import worker_id
        from .summary import Summary

        self.config = config
        modules = tuple(config.getoption("crossbn_backend_module")) + tuple(
            p for p in os.environ.get("CROSSBN_BACKEND_MODULE", "").split(os.pathsep) if p)
        self.modules = modules
        found = discover(modules)
        self.specs, self.backends = instantiate(choose(_option(config, "backends"), found), found)
        self.names = list(self.backends)
        self.devices = [d.strip() for d in _option(config, "devices").split(",") if d.strip()]
        bad = [d for d in self.devices if d not in DEVICES]
        if bad or not self.devices:
            raise pytest.UsageError(f"--crossbn-devices: unknown device(s) {bad}; known: {', '.join(DEVICES)}")
        try:
            self.timeout = float(_option(config, "timeout"))
        except ValueError:
            self.timeout = -1.0
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise pytest.UsageError(f"--crossbn-timeout: must be a positive number of seconds, "
                                    f"got {_option(config, 'timeout')!r}")
        try:
            self.cases = load_suite(_option(config, "suite"))
        except CatalogueError as e:
            raise pytest.UsageError(f"--crossbn-suite: {e}") from e
        from .models import is_model_case

        self.kind = "models" if any(is_model_case(c) for c in self.cases) else "batchnorm"
        out = _option(config, "out")
        self.out = Path(out) if out else None
        self.known, self.known_skip = [], bool(config.getoption("crossbn_known_skip")) or \
            os.environ.get("CROSSBN_KNOWN_SKIP", "") not in ("", "0")
        if _option(config, "known"):
            from .known import KnownError, load as load_known

            try:
                self.known = load_known(_option(config, "known"))
            except KnownError as e:
                raise pytest.UsageError(f"--crossbn-known: {e}") from e
        from .shard import ShardError, parse_shard

        try:
            self.shard = parse_shard(_option(config, "shard"))
        except ShardError as e:
            raise pytest.UsageError(f"--crossbn-shard: {e}") from e
        if _option(config, "compare") and self.out is None:
            raise pytest.UsageError("--crossbn-compare: needs --crossbn-out, where the results to compare are written")
        self.worker_id = worker_id()
        self._pool = self._writer = None
        # the controller's end of run (pytest_sessionfinish): run.json, the comparison, the report
        self.started, self.run_info, self.comparison, self.report, self.report_error = 0.0, None, None, None, None
        self.side_by_side: list[dict] = []
        self.summary = Summary()

    @property
    def pool(self):
        if self._pool is None:
            from .runner import WorkerPool

            self._pool = WorkerPool(self.specs, self.backends)
        return self._pool

    def record(self, rec: dict) -> None:
        if self.out is None:
            return
        if self._writer is None:
            from .results import ResultWriter

            self._writer = ResultWriter(self.out, self.worker_id)
        self._writer.write(rec)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._writer is not None:
            self._writer.close()


def _state(config) -> _State:
    if _STATE not in config.stash:
        from .backends import BackendError

        try:
            config.stash[_STATE] = _State(config)
        except BackendError as e:
            raise pytest.UsageError(f"--crossbn-backends: {e}") from e
    return config.stash[_STATE]


def _is_controller(config) -> bool:
    return not hasattr(config, "workerinput")


def _wants_conformance(config) -> bool:
    """True for a conformance run (a --crossbn-* option, or crossbn.conformance
    among the arguments); crossbn's own tests and other projects' sessions
    are left alone even when CROSSBN_* variables are exported."""
    if any(config.getoption(f"crossbn_{name}") for name, *_ in _OPTIONS):
        return True
    return any("conformance" in str(a) for a in config.args)


def pytest_configure(config):
    config.addinivalue_line("markers", "crossbn: a cross-backend BatchNorm conformance test (case x backend x device)")
    config.addinivalue_line("markers", "crossbn_backend(name): the backend a conformance test runs on")
    if not _wants_conformance(config):
        return
    st = _state(config)  # bad options and catalogues fail here, before any collection
    config.pluginmanager.register(_SummaryHooks(st.summary), "crossbn-summary")
    if _is_controller(config):
        from .progress import register as register_progress

        register_progress(config, _option(config, "progress"))  # crossbn/progress.py; nothing when "off"
    if _is_controller(config) and st.out is not None:
        # A new run: earlier runs' files in the same folder would be merged
        # into this one's results, so they go (the folder is this run's).
        # (conventions.jsonl too: `crossbn run` observes them after the tests)
        for stale in (*st.out.glob("results-*.jsonl"), st.out / "results.jsonl", st.out / "conventions.jsonl",
                      st.out / "comparison.json", st.out / "side-by-side.json"):
            stale.unlink(missing_ok=True)
        from . import environment

        st.started = time.monotonic()
        st.run_info = environment.describe(
            suite=_option(config, "suite"), backends=list(st.names), devices=st.devices,
            shard=None if st.shard is None else "%d/%d" % st.shard,
            backend_modules=[Path(m).name for m in st.modules],
            argv=[str(a) for a in config.invocation_params.args])
        environment.write(st.out, st.run_info)


def _user_named_dist(config) -> bool:
    named = [*map(str, config.invocation_params.args), os.environ.get("PYTEST_ADDOPTS", ""),
             *map(str, config.getini("addopts"))]
    return any(a.startswith("--dist") or a == "-d" for text in named for a in text.split())


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under -n, one unit of work per backend (crossbn/schedule.py), in
    place of xdist's default test-by-test `load`; a --dist the user names
    is kept."""
    if not _wants_conformance(config) or config.option.dist != "load" or _user_named_dist(config):
        return None
    from .schedule import BackendScheduling, scope_of

    st = _state(config)
    return BackendScheduling(config, log, scope_of(st.backends, st.devices))


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
    if path.name not in _SUITE_MODULES.values() or path.resolve().parent != _CONFORMANCE \
            or not _wants_conformance(config):
        return None
    return True if path.name != _SUITE_MODULES[_state(config).kind] else None


def pytest_report_header(config):
    if not _wants_conformance(config):
        return None
    st = _state(config)
    lines = [f"crossbn: suite {_option(config, 'suite')} ({len(st.cases)} cases), devices {','.join(st.devices)}, "
             f"results {st.out / 'results.jsonl' if st.out else '(not written: no --crossbn-out)'}"]
    for name, b in st.backends.items():
        why = b.available()
        versions = f"under {b.interpreter}" if b.interpreter else \
            ", ".join(f"{k} {v}" for k, v in b.versions().items())
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
    for name in st.backends:
        marks = [pytest.mark.crossbn, pytest.mark.crossbn_backend(name)]
        for case in st.cases:
            if not st.backends[name].applies(case):
                continue  # another framework's switches: not a case for this backend
            for device in st.devices:
                params.append(pytest.param((case, name, device), id=f"{case.pytest_id}-{name}-{device}", marks=marks))
    metafunc.parametrize("crossbn_target", params)


def pytest_collection_modifyitems(config, items):
    """--crossbn-shard K/N: keep this shard's conformance tests (crossbn/shard.py)."""
    if not _wants_conformance(config) or _state(config).shard is None:
        return
    from .shard import in_shard

    k, n = _state(config).shard
    keep, drop = [], []
    for item in items:
        (keep if item.get_closest_marker("crossbn") is None or in_shard(item.name, k, n) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def crossbn_check(request):
    """Callable that judges one (case, backend, device), records it, and turns
    the verdict into a pytest outcome (skip, pass, or fail with the details)."""
    st = _state(request.config)

    def check(case, backend: str, device: str) -> dict:
        from .compare import FAILING
        from .models import is_model_case
        from .results import failure_message

        if is_model_case(case):
            from .models.judge import judge_model as judge, model_record as make_record
        else:
            from .judge import judge
            from .results import make_record

        try:
            rec = judge(case, backend, st.backends[backend], device, st.pool, st.timeout)
        except Exception as e:  # crossbn's own failure: still leave a record, then report it
            st.record(make_record(case=case, backend=backend, device=device, verdict="crash",
                                  reason=f"crossbn internal error: {type(e).__name__}: {e}"))
            raise
        known = None
        if rec["verdict"] in FAILING and st.known:
            from .known import first_match

            known = first_match(st.known, rec)
            if known is not None:
                rec["known"] = {"entry": known.index, "reason": known.reason, "link": known.link}
        st.record(rec)
        worst = rec["worst"] or {}
        request.node.user_properties.append(("crossbn", {
            "backend": backend, "device": device, "verdict": rec["verdict"], "case": rec["pytest_id"],
            "ratio": worst.get("ratio"), "observable": worst.get("observable"), "version": rec["version"],
            "reason": rec["reason"].splitlines()[0] if rec["reason"] else "",
            "cross_device": (rec["cross_device"] or {}).get("verdict"),
            "cross_version": rec["cross_version"] and [rec["cross_version"][k] for k in ("against", "verdict")],
            "known": None if known is None else known.index}))
        if rec["verdict"] == "unsupported":
            pytest.skip(f"unsupported: {rec['reason']}")
        if known is not None:
            why = f"known difference #{known.index}: {known.reason}" + (f" ({known.link})" if known.link else "")
            (pytest.skip if st.known_skip else pytest.xfail)(why)
        if rec["verdict"] in FAILING:
            pytest.fail(failure_message(rec), pytrace=False)
        return rec

    return check


class _SummaryHooks:
    """Registered per session: pytest_runtest_logreport gets no config, so
    the summary it fills is bound here instead of living in a global."""

    def __init__(self, summary):
        self.summary = summary

    def pytest_runtest_logreport(self, report):
        # Runs on the controller for xdist workers' reports too; the data
        # travels on the report, so the summary is the same with or without xdist.
        for key, data in getattr(report, "user_properties", ()):
            if key == "crossbn" and report.when in ("call", "setup"):
                self.summary.add(data)


def pytest_sessionfinish(session, exitstatus):
    if not _wants_conformance(session.config):
        return
    st = _state(session.config)
    st.close()
    if _is_controller(session.config) and st.out is not None and st.out.exists():
        from .results import merge

        parts = sorted(st.out.glob("results-*.jsonl"))
        if parts:
            merge(parts, st.out / "results.jsonl")
        from .upgrade_checks import compare_with_baseline, compare_side_by_side

        compare_with_baseline(session, st, _option(session.config, "compare"))
        compare_side_by_side(session, st)
        _finish_report(session, st, int(exitstatus))


def _finish_report(session, st, exitstatus: int) -> None:
    """The controller's last step: run.json completed, then the HTML report
    (its failure is reported, never allowed to lose the results above)."""
    from . import environment

    if st.run_info is not None:
        complete = exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not (session.shouldstop or session.shouldfail)
        environment.finish(st.out, st.run_info, started=st.started, exit_status=exitstatus, complete=complete)
    if not (st.out / "results.jsonl").exists():
        return
    try:
        from .report import build

        st.report = build([st.out], st.out)
    except Exception as e:  # noqa: BLE001 - any failure here must leave the results usable
        st.report_error = f"{type(e).__name__}: {e}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _wants_conformance(config):
        return
    st = _state(config)
    lines = st.summary.lines()
    if lines:
        terminalreporter.section("crossbn verdicts")
    for line in lines:
        terminalreporter.write_line(line)
    if st.known:
        used = st.summary.known_used
        terminalreporter.write_line(f"known differences: {sum(used.values())} finding(s) matched "
                                    f"{len(used)} of {len(st.known)} entries")
        for k in st.known:
            if k.index not in used:
                terminalreporter.write_line(f"  matched nothing: {k.label()}: {k.reason}", yellow=True)
    if st.out is not None and (lines or st.report_error):
        terminalreporter.write_line(f"results: {st.out / 'results.jsonl'}")
        from .upgrade_checks import summary_lines

        for text, red in summary_lines(st):
            terminalreporter.write_line(text, red=red)
        if st.report is not None:
            terminalreporter.write_line(f"report: {st.report}")
        if st.report_error:
            terminalreporter.write_line(f"report: NOT written: {st.report_error}", red=True)
