"""The plugin's options and its per-process state (crossbn/app/plugin.py uses them).

Each option has a command-line flag `--crossbn-<name>` and a CROSSBN_*
environment fallback; `option` resolves one (flag, then environment, then
default). `State` resolves them once per process and holds what a run
needs: the cases, the backends, the limits, the worker pool (started on
first use), the result writer, and the controller's run-folder state.
Frameworks are never imported here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

OPTIONS = (
    # (name, env, default, help)
    ("suite", "CROSSBN_SUITE", "default", "case catalogue: a name in crossbn/cases/ or a path to a .toml file"),
    (
        "backends",
        "CROSSBN_BACKENDS",
        "all",
        "comma-separated backends, or 'all' (every installed one); "
        "NAME@/path/to/python runs one under another interpreter",
    ),
    ("devices", "CROSSBN_DEVICES", "cpu", "comma-separated devices: cpu, cuda"),
    ("out", "CROSSBN_OUT", None, "directory for results-<worker>.jsonl and the merged results.jsonl"),
    ("timeout", "CROSSBN_TIMEOUT", "300", "seconds a backend may take for one case before its worker is killed"),
    (
        "compare",
        "CROSSBN_COMPARE",
        None,
        "a baseline name under baselines/ (or results) to compare the run "
        "with: comparison.json, the report's comparison page; regressions fail",
    ),
    (
        "known",
        "CROSSBN_KNOWN",
        None,
        "a TOML file of known differences (crossbn/records/known.py): matching findings are xfails, not failures",
    ),
    ("progress", "CROSSBN_PROGRESS", "off", "live progress: auto (rich on a terminal, else plain), rich, plain, off"),
    (
        "shard",
        "CROSSBN_SHARD",
        None,
        "K/N: run only shard K of N (1 <= K <= N), for CI sharding or several "
        "machines; the shards' results merge with `crossbn report A B`",
    ),
    (
        "max_case_bytes",
        "CROSSBN_MAX_CASE_BYTES",
        "auto",
        "refuse (as unsupported, with the estimate) a case "
        "estimated to need more memory than this: bytes, with "
        "an optional K/M/G suffix; auto: half the RAM; 0: no limit",
    ),
    (
        "diagnosis",
        "CROSSBN_DIAGNOSIS",
        "grouped",
        "grouped: each root cause's findings share one full "
        "diagnosis, confirmed per finding (crossbn/verdict/root_causes.py); "
        "each: every finding searched on its own; audit: grouped, "
        "and each confirmed finding searched on its own too",
    ),
    (
        "cache",
        "CROSSBN_CACHE",
        "auto",
        "the folder of crossbn's cache (judgements of unchanged outputs, JAX's "
        "and Inductor's compilation caches); auto: $XDG_CACHE_HOME/crossbn or "
        "~/.cache/crossbn; off: none (the frameworks keep their own defaults)",
    ),
    (
        "worker_max_mb",
        "CROSSBN_WORKER_MAX_MB",
        "auto",
        "restart a backend's worker process after a case that "
        "left it holding more than this many MB; auto: a quarter "
        "of the RAM; 0: never",
    ),
)
DEVICES = ("cpu", "cuda")


def option(config, name: str):
    for opt, env, default, _ in OPTIONS:
        if opt == name:
            value = config.getoption(f"crossbn_{name}")
            return value if value is not None else os.environ.get(env, default)
    raise KeyError(name)


class State:
    """Per-process crossbn state: options resolved once, the worker pool and
    the result writer started on first use, the summary (controller)."""

    def __init__(self, config):
        from crossbn.backends import choose, discover, instantiate
        from crossbn.records.results import worker_id
        from crossbn.records.summary import Summary
        from crossbn.spec.catalogue import CatalogueError
        from crossbn.spec.suites import load_suite

        self.config = config
        modules = tuple(config.getoption("crossbn_backend_module")) + tuple(
            p for p in os.environ.get("CROSSBN_BACKEND_MODULE", "").split(os.pathsep) if p
        )
        self.modules = modules
        found = discover(modules)
        self.specs, self.backends = instantiate(choose(option(config, "backends"), found), found)
        self.names = list(self.backends)
        self.devices = [d.strip() for d in option(config, "devices").split(",") if d.strip()]
        bad = [d for d in self.devices if d not in DEVICES]
        if bad or not self.devices:
            what = f"unknown device(s) {', '.join(bad)}" if bad else f"no device in {option(config, 'devices')!r}"
            raise pytest.UsageError(f"--crossbn-devices: {what}; known: {', '.join(DEVICES)}")
        try:
            self.timeout = float(option(config, "timeout"))
        except ValueError:
            self.timeout = -1.0
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise pytest.UsageError(
                f"--crossbn-timeout: must be a positive number of seconds, got {option(config, 'timeout')!r}"
            )
        try:
            self.cases = load_suite(option(config, "suite"))
        except CatalogueError as e:
            raise pytest.UsageError(f"--crossbn-suite: {e}") from e
        from crossbn.spec.network_case import is_model_case

        self.kind = "models" if any(is_model_case(c) for c in self.cases) else "batchnorm"
        if self.kind == "batchnorm":
            try:  # compiled backends run a stratified subset of the suite (crossbn/spec/subset.py)
                for backend in self.backends.values():
                    backend.bind_suite(self.cases)
            except ValueError as e:
                raise pytest.UsageError(str(e)) from e
        out = option(config, "out")
        self.out = Path(out) if out else None
        self.known, self.known_skip = (
            [],
            bool(config.getoption("crossbn_known_skip")) or os.environ.get("CROSSBN_KNOWN_SKIP", "") not in ("", "0"),
        )
        if option(config, "known"):
            from crossbn.records.known import KnownError, load as load_known

            try:
                self.known = load_known(option(config, "known"))
            except KnownError as e:
                raise pytest.UsageError(f"--crossbn-known: {e}") from e
        from crossbn.execution.shard import ShardError, parse_shard

        try:
            self.shard = parse_shard(option(config, "shard"))
        except ShardError as e:
            raise pytest.UsageError(f"--crossbn-shard: {e}") from e
        if option(config, "compare") and self.out is None:
            raise pytest.UsageError("--crossbn-compare: needs --crossbn-out, where the results to compare are written")
        self.resume = bool(config.getoption("crossbn_resume")) or os.environ.get("CROSSBN_RESUME", "") not in ("", "0")
        if self.resume and self.out is None:
            raise pytest.UsageError("--crossbn-resume: needs --crossbn-out, the folder of the run to finish")
        from crossbn.execution.limits import LimitError, Limits

        try:
            self.limits = Limits.parse(option(config, "max_case_bytes"), option(config, "worker_max_mb"))
        except LimitError as e:
            raise pytest.UsageError(str(e)) from e
        from crossbn.verdict.root_causes import RootCauses

        try:
            self.causes = RootCauses(option(config, "diagnosis"))
        except ValueError as e:
            raise pytest.UsageError(f"--crossbn-diagnosis: {e}") from e
        from crossbn.records import cache

        root = cache.resolve(option(config, "cache"))
        self.cache = None if root is None else cache.Judgements(root)
        if root is not None:  # a variable the user set is theirs
            for name, value in cache.compiler_env(root).items():
                os.environ.setdefault(name, value)
        self.done: set = set()  # resume: (case id, backend, device) keys already recorded
        self.resumed = None  # resume (controller): {"kept", "rerun"} from resume.prepare
        self.crashed: list[str] = []  # tests whose xdist worker died under them (controller)
        self.live, self.last_sync, self.restore_sigterm = None, 0.0, False  # run_folder.py
        self.tmp = self.tmp_was = None  # run_folder.py: the run's own TMPDIR
        self.worker_id = worker_id()
        self._pool = self._writer = None
        # the controller's end of run (pytest_sessionfinish): run.json, the comparison, the report
        self.started, self.run_info, self.comparison, self.report, self.report_error = 0.0, None, None, None, None
        self.side_by_side: list[dict] = []
        self.summary = Summary()

    @property
    def pool(self):
        if self._pool is None:
            from crossbn.execution.runner import WorkerPool

            self._pool = WorkerPool(self.specs, self.backends, worker_max_bytes=self.limits.worker_max_bytes)
        return self._pool

    def record(self, rec: dict) -> None:
        if self.out is None:
            return
        if self._writer is None:
            from crossbn.records.store import ResultWriter

            self._writer = ResultWriter(self.out, self.worker_id)
        self._writer.write(rec)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._writer is not None:
            self._writer.close()
