"""The options of a run, declared once and resolved once.

`OPTIONS` declares each (an `Option`): the plugin's `--crossbn-<name>`,
`crossbn run`'s `--<name>`, its CROSSBN_* variable and the docs' table are
made from it. `option` resolves one (flag, then variable, then default);
`Resolved` resolves them all once per process and checks them: the cases,
the backends, the devices, the limits, the cache. session.py holds what a
run then does with them. Frameworks are never imported here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Option:
    """One option of a run, declared once: the pytest plugin's `--crossbn-<name>`,
    `crossbn run`'s `--<name>`, its CROSSBN_* variable and the docs' table are made from it."""

    name: str
    env: str
    default: str | None  # the plugin's (None: not set)
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    kind: str = "value"  # value | switch (store_true) | list (repeatable; the variable os.pathsep-separated)
    run_default: str | None = None  # `crossbn run`'s default, where it differs from the plugin's
    on_run: bool = True  # also a `crossbn run` flag (resume is one of its own there: --resume DIR)

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or not self.env.startswith("CROSSBN_"):
            raise ValueError(f"option {self.name!r}: a Python name, with a CROSSBN_* variable (got {self.env!r})")
        if self.kind not in ("value", "switch", "list"):
            raise ValueError(f"option {self.name}: kind {self.kind!r} is not value, switch or list")
        if self.choices and self.default is not None and self.default not in self.choices:
            raise ValueError(f"option {self.name}: default {self.default!r} is not one of {self.choices}")

    @property
    def pytest_flag(self) -> str:
        return f"--crossbn-{self.name.replace('_', '-')}"

    @property
    def run_flag(self) -> str:
        return f"--{self.name.replace('_', '-')}"

    def where(self, *, run: bool = False) -> str:
        """ "(env X; default: Y)", as both help texts end."""
        if self.kind == "switch":
            return f"(env {self.env}=1)"
        if self.kind == "list":
            return f"(repeatable; env {self.env}, os.pathsep-separated)"
        default = self.run_default if run and self.run_default is not None else self.default
        return f"(env {self.env}; default: {default if default is not None else 'none'})"


OPTIONS: tuple[Option, ...] = (
    Option("suite", "CROSSBN_SUITE", "default", "case catalogue: a name in crossbn/cases/ or a path to a .toml file"),
    Option(
        "dtypes",
        "CROSSBN_DTYPES",
        "all",
        "comma-separated dtypes of the cases to run (float64, float32, float16, bfloat16), or 'all'",
        metavar="LIST",
    ),
    Option(
        "backends",
        "CROSSBN_BACKENDS",
        "all",
        "comma-separated backends, or 'all' (every installed one); NAME@/path/to/python runs one under another "
        "interpreter, beside NAME (side by side: two releases of one framework)",
    ),
    Option("devices", "CROSSBN_DEVICES", "cpu", "comma-separated devices: cpu, cuda"),
    Option(
        "out",
        "CROSSBN_OUT",
        None,
        "the run's folder: results.jsonl, run.json and the report",
        metavar="DIR",
        run_default="reports/<timestamp>",
    ),
    Option("timeout", "CROSSBN_TIMEOUT", "300", "seconds a backend may take for one case before its worker is killed"),
    Option(
        "compare",
        "CROSSBN_COMPARE",
        None,
        "compare the results with baselines/BASELINE (or results): comparison.json, a page in the report; "
        "regressions fail the run",
        metavar="BASELINE",
    ),
    Option("baselines", "CROSSBN_BASELINES", "baselines", "where --compare's baselines live", metavar="DIR"),
    Option(
        "fail_on",
        "CROSSBN_FAIL_ON",
        "regressed",
        "the --compare classes that fail the run, comma-separated: regressed, removed (a result in the baseline "
        "that did not run), new, changed, fixed, improved",
        metavar="CLASSES",
    ),
    Option(
        "known",
        "CROSSBN_KNOWN",
        None,
        "a TOML file of known differences (a bare name: a built-in one, e.g. frameworks): matching findings are "
        "xfails, not failures",
        metavar="FILE",
    ),
    Option(
        "known_skip", "CROSSBN_KNOWN_SKIP", None, "known differences become skips rather than xfails", kind="switch"
    ),
    Option(
        "progress",
        "CROSSBN_PROGRESS",
        "off",
        "live progress: auto (rich on a terminal, plain lines elsewhere), rich, plain, off",
        choices=("auto", "rich", "plain", "off"),
        run_default="auto",
    ),
    Option(
        "shard",
        "CROSSBN_SHARD",
        None,
        "run only shard K of N (each test hashed to one shard by its id: deterministic), for CI sharding or "
        "several machines; the shards' folders merge with `crossbn report A B`",
        metavar="K/N",
    ),
    Option(
        "max_case_bytes",
        "CROSSBN_MAX_CASE_BYTES",
        "auto",
        "refuse (as unsupported, with the estimate) a case estimated to need more memory than this: bytes, with "
        "an optional K/M/G suffix; auto: half the RAM shared by the workers; 0: no limit",
        metavar="SIZE",
    ),
    Option(
        "worker_max_mb",
        "CROSSBN_WORKER_MAX_MB",
        "auto",
        "restart a backend's worker process after a case that left it holding more than this many MB; auto: a "
        "quarter of the RAM shared by the workers; 0: never",
        metavar="MB",
    ),
    Option(
        "diagnosis",
        "CROSSBN_DIAGNOSIS",
        "grouped",
        "grouped: each root cause's findings share one full diagnosis, confirmed per finding; each: every "
        "finding searched on its own; audit: grouped, and each confirmed finding searched on its own too",
        choices=("grouped", "each", "audit"),
    ),
    Option(
        "cache",
        "CROSSBN_CACHE",
        "auto",
        "the folder of crossbn's cache (judgements of unchanged outputs, JAX's and Inductor's compilation "
        "caches); auto: $XDG_CACHE_HOME/crossbn or ~/.cache/crossbn; off: none",
        metavar="DIR",
    ),
    Option(
        "resume",
        "CROSSBN_RESUME",
        None,
        "finish the interrupted run in --crossbn-out: only the tests it has no record of (or a crash or timeout "
        "record) run",
        kind="switch",
        on_run=False,
    ),
    Option(
        "backend_module", "CROSSBN_BACKEND_MODULE", None, "a .py file whose Backend subclasses are added", kind="list"
    ),
)
BY_NAME = {o.name: o for o in OPTIONS}
# the options a run's run.json records, resolved, and `crossbn run --resume` gives back
# (the folder is the run's own; progress only shows it)
RECORDED = tuple(o.name for o in OPTIONS if o.kind == "value" and o.name not in ("out", "progress"))
DEVICES = ("cpu", "cuda")


def option(config, name: str):
    """An option's value: its flag, else its CROSSBN_* variable, else its default
    (a switch: a bool; a list: the flags' values, then the variable's)."""
    opt = BY_NAME[name]
    given = config.getoption(f"crossbn_{name}")
    if opt.kind == "switch":
        return bool(given) or os.environ.get(opt.env, "") not in ("", "0")
    if opt.kind == "list":
        return tuple(given or ()) + tuple(p for p in os.environ.get(opt.env, "").split(os.pathsep) if p)
    return given if given is not None else os.environ.get(opt.env, opt.default)


def markdown() -> str:
    """The options as the docs' table (docs/reference/cli.md)."""
    rows = ["| `crossbn run` | pytest | variable | default | what it does |", "|---|---|---|---|---|"]
    for o in OPTIONS:
        run = f"`{o.run_flag}`" if o.on_run else "`--resume DIR`"
        default = "" if o.kind != "value" else (o.default if o.default is not None else "")
        if o.run_default is not None:
            default = f"{default or 'none'} (`crossbn run`: {o.run_default})"
        rows.append(f"| {run} | `{o.pytest_flag}` | `{o.env}` | {default} | {o.help.replace('|', '/')} |")
    return "\n".join(rows)


class Resolved:
    """The options of a run, resolved once per process (flag, variable, default) and
    checked: a bad one is a pytest.UsageError naming it, before any collection."""

    def __init__(self, config):
        from crossbn.backends import choose, discover, instantiate
        from crossbn.spec.catalogue import CatalogueError
        from crossbn.spec.suites import load_suite

        self.config = config
        modules = option(config, "backend_module")
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
        self.cases = only_dtypes(self.cases, option(config, "dtypes"), option(config, "suite"))
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
        if self.out is not None and not option(config, "resume"):
            from crossbn.records.folders import FolderError, check_out_folder

            try:
                check_out_folder(self.out, "--crossbn-out")
            except FolderError as e:
                raise pytest.UsageError(str(e)) from e
        self.known, self.known_skip = [], option(config, "known_skip")
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
        from crossbn.upgrade.baseline import BaselineError, find, parse_fail_on

        self.compare, self.baselines = option(config, "compare"), Path(option(config, "baselines"))
        try:
            self.fail_on = parse_fail_on(option(config, "fail_on"))
        except BaselineError as e:
            raise pytest.UsageError(f"--crossbn-fail-on {e}") from e
        if self.compare and self.out is None:
            raise pytest.UsageError("--crossbn-compare: needs --crossbn-out, where the results to compare are written")
        try:
            if self.compare:
                find(self.compare, self.baselines)
        except BaselineError as e:
            raise pytest.UsageError(f"--crossbn-compare: {e}") from e
        self.resume = option(config, "resume")
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
        if root is not None:
            from crossbn.records.folders import FolderError, check_out_folder

            try:
                check_out_folder(root, "--crossbn-cache")
            except FolderError as e:
                raise pytest.UsageError(f"{e} (off: no cache)") from e
        self.cache = None if root is None else cache.Judgements(root)
        if root is not None:  # a variable the user set is theirs
            for name, value in cache.compiler_env(root).items():
                os.environ.setdefault(name, value)


def only_dtypes(cases: list, dtypes: str, suite: str) -> list:
    """--dtypes: the cases of these dtypes; an unknown name, or none left, is a usage error."""
    from crossbn.spec.dtypes import NAMES

    if dtypes in ("", "all"):
        return cases
    wanted = [d.strip() for d in dtypes.split(",") if d.strip()]
    unknown = [d for d in wanted if d not in NAMES]
    if unknown or not wanted:
        raise pytest.UsageError(
            f"--crossbn-dtypes {dtypes}: unknown dtype(s) {', '.join(unknown) or '(none given)'}; "
            f"known: {', '.join(NAMES)}, or all"
        )
    kept = [c for c in cases if getattr(c, "dtype", None) in wanted]
    if not kept:
        raise pytest.UsageError(f"--crossbn-dtypes {dtypes}: suite {suite} has no case of these dtypes")
    return kept


if __name__ == "__main__":  # the docs table (python -m crossbn.app.reference writes it into the page)
    print(markdown())
