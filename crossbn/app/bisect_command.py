"""`crossbn bisect`: which release of a framework changed a result.

Every input is checked before anything runs (exit 2 with one line). Each
release tested is one side-by-side `crossbn run` of only the cases still
open: the backends under GOOD's environment first (the reference), then
under the release's, so each result's `cross_version` says whether the
release's outputs differ from GOOD's (crossbn/upgrade/bisect.py decides
which release to run next). Each run's folder is kept under --out/steps/;
bisect.json holds the answers and every step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from crossbn.bugreport.helptext import examples, wrapped
from crossbn.upgrade.bisect import Bisection, Step, bisect, sweep
from crossbn.upgrade.releases import ReleaseError, between, distribution, environment, list_releases

# cross_version verdicts: the release's outputs against GOOD's
_SAME = {"bitwise": False, "agree": False, "disagree": True, "deviation": True, "nan-mismatch": True}
_BROKEN = ("crash", "error", "timeout")


def add_parser(sub) -> None:
    bp = sub.add_parser(
        "bisect",
        help="find the release of a framework that changed a result",
        description=wrapped(
            "Lists FRAMEWORK's releases from GOOD to BAD on the package index (pip), installs "
            "each one it needs once (a pure-Python framework beside this environment's packages, "
            "one with compiled parts in an environment of its own) and bisects: for each result, "
            "the first release whose outputs differ from GOOD's beyond their bound (bit for bit "
            "with --bitwise). A release that cannot be installed is recorded and skipped. "
            "--sweep runs every release instead: a timeline. Exit 0 with every answer found, "
            "1 when a result's change cannot be pinned to one release, 2 for bad usage."
        ),
        epilog=examples(
            "crossbn bisect keras 3.11.0 3.15.1 --backends keras-jax --suite smoke --dtypes float64",
            "crossbn bisect flax 0.10.0 0.12.8 --finding smoke_offset-f32-8x4x6-cf-t2e-bf8e18d0--flax-linen--cpu --sweep",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bp.add_argument("framework", help="the distribution on the package index, e.g. keras, flax, torch")
    bp.add_argument("good", help="a release whose outputs are the reference")
    bp.add_argument("bad", help="a later release whose outputs differ")
    bp.add_argument(
        "--finding",
        help="one finding, named as `crossbn repro` takes it (looked up in --results or --suite when given)",
    )
    bp.add_argument("--results", help="a run folder: its findings on the chosen backends")
    bp.add_argument("--suite", help="a case catalogue: every result of it that differs at BAD")
    bp.add_argument("--backends", help="backends of FRAMEWORK to run (default: every one installed here)")
    bp.add_argument("--dtypes", help="with --suite: only cases of these dtypes (comma-separated)")
    bp.add_argument("--bitwise", action="store_true", help="a release differs when any bit differs")
    bp.add_argument("--sweep", action="store_true", help="run every release: a timeline of each result")
    bp.add_argument("--out", help="folder for bisect.json and each step's run (default: reports/bisect-...)")
    bp.add_argument("--cache", help="where the releases' environments are kept (default: crossbn's cache)")
    bp.add_argument("--index-url", help="the package index (default: pip's configuration)")
    bp.add_argument("-n", default="1", help="workers of each step's run (default: 1)")
    bp.add_argument("--backend-module", action="append", default=[], help="a .py file with extra backends")
    bp.set_defaults(func=bisect_command)


def _fail(message: str) -> int:
    print(f"crossbn bisect: {message}", file=sys.stderr)
    return 2


def _framework_backends(args) -> list[str]:
    """The backends that run FRAMEWORK (its first package): all installed ones, or those named."""
    from crossbn.backends import discover, load

    specs = discover(tuple(args.backend_module))
    ours, seen = {}, set()
    for name, spec in specs.items():
        try:
            backend = load(spec)
        except Exception:  # noqa: BLE001 - a backend that cannot load is not one to bisect
            continue
        if backend.packages:
            seen.add(distribution(backend.packages[0]))
        if backend.packages and distribution(backend.packages[0]) == distribution(args.framework):
            ours[name] = backend
    if not ours:
        raise ValueError(f"no backend of crossbn runs {args.framework!r} (frameworks: {', '.join(sorted(seen))})")
    if not args.backends:
        # the release's environment brings the framework itself; the rest must be here
        usable = [n for n, b in ours.items() if _others_installed(b, args.framework)]
        if not usable:
            raise ValueError(f"no backend of {args.framework} can run here ({', '.join(ours)})")
        return usable
    named = [n.strip() for n in args.backends.split(",") if n.strip()]
    wrong = [n for n in named if n not in ours]
    if wrong or not named:
        raise ValueError(f"--backends {args.backends}: not backends of {args.framework} (those are: {', '.join(ours)})")
    return named


def _others_installed(backend, framework: str) -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None
        for m in backend.modules
        if distribution(m.split(".")[0]) != distribution(framework)
    )


def _targets(args, backends: list[str]) -> list[tuple]:
    """(case, backend, device) of every result to bisect (for --suite, every
    one it runs: BAD's run says which differ)."""
    from crossbn.spec.case import Case
    from crossbn.spec.verdicts import FAILING

    if args.finding:
        from crossbn.bugreport.finding import locate

        where = locate(args.finding, args.results, args.suite)
        if where.backend.split("@")[0] not in backends:
            raise ValueError(f"--finding {args.finding}: a result of {where.backend}, not of {', '.join(backends)}")
        return [(where.case, where.backend.split("@")[0], where.device)]
    if args.results:
        from crossbn.records.results import read
        from crossbn.records.sources import results_file

        found = {}
        for rec in read(results_file(args.results)):
            base = rec.get("backend", "").split("@")[0]
            if base in backends and rec.get("verdict") in FAILING and "network" not in rec.get("case", {}):
                found[(rec["case_id"], base, rec["device"])] = (Case.from_dict(rec["case"]), base, rec["device"])
        if not found:
            raise ValueError(f"--results {args.results}: no finding of {', '.join(backends)} there")
        return list(found.values())
    from crossbn.spec.suites import load_suite

    dtypes = {d.strip() for d in args.dtypes.split(",")} if args.dtypes else None
    cases = [c for c in load_suite(args.suite) if isinstance(c, Case) and (dtypes is None or c.dtype in dtypes)]
    if not cases:
        raise ValueError(f"--suite {args.suite}: no case{' of ' + args.dtypes if dtypes else ''}")
    return [(c, b, "cpu") for c in cases for b in backends]


def _key(t) -> tuple:
    return (t[0].id, t[1], t[2])


class Runner:
    """Runs one release side by side with GOOD on the open results' cases."""

    def __init__(self, args, releases: list[str], targets: list[tuple], out: Path, cache: Path):
        self.args, self.out, self.cache = args, out, cache
        self.good = releases[0]
        self.by_key = {_key(t): t for t in targets}
        self.pythons: dict[str, str] = {}
        self.at_good: dict[tuple, Step] = {}  # each result at GOOD, from the runs' reference side

    def python(self, release: str) -> str:
        if release not in self.pythons:
            self.pythons[release] = environment(self.args.framework, release, self.cache, index_url=self.args.index_url)
        return self.pythons[release]

    def label(self, release: str) -> str:
        return f"{distribution(self.args.framework)}-{release}"

    def __call__(self, release: str, keys: list) -> dict | str:
        from crossbn.bugreport.casefile import group_toml

        try:
            pythons = {self.good: self.python(self.good), release: self.python(release)}
        except ReleaseError as e:
            return str(e)
        step = self.out / "steps" / release
        step.mkdir(parents=True, exist_ok=True)
        cases = {t[0].id: t[0] for t in (self.by_key[k] for k in keys)}
        (step / "cases.toml").write_text("\n".join(group_toml(c, c.group) for c in cases.values()), encoding="utf-8")
        bases = sorted({self.by_key[k][1] for k in keys})
        chosen = [f"{b}@{self.label(r)}={pythons[r]}" for r in dict.fromkeys((self.good, release)) for b in bases]
        cmd = [sys.executable, "-m", "crossbn", "run", "--suite", str(step / "cases.toml")]
        devices = ",".join(sorted({k[2] for k in keys}))
        cmd += ["--backends", ",".join(chosen), "--devices", devices, "--out", str(step / "run"), "-n", self.args.n]
        cmd += ["--no-conventions", "--progress", "plain"]
        for module in self.args.backend_module:
            cmd += ["--backend-module", module]
        with open(step / "run.log", "w", encoding="utf-8") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=Path.cwd())
        results = step / "run" / "results.jsonl"
        if proc.returncode not in (0, 1) or not results.is_file():
            return f"its run exited {proc.returncode} ({step / 'run.log'})"
        return self._read(results, release, keys)

    def _read(self, results: Path, release: str, keys: list) -> dict:
        records = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]

        def of(r: str) -> dict:  # the records of one release's side, by result
            at = "@" + self.label(r)
            return {
                (x["case_id"], x["backend"].split("@")[0], x["device"]): x for x in records if x["backend"].endswith(at)
            }

        good, mine = of(self.good), of(release)
        for k, rec in good.items():
            self.at_good.setdefault(k, Step(False, rec["verdict"], (rec.get("worst") or {}).get("ratio"), "itself"))
        out = {}
        for k in keys:
            rec = mine.get(k)
            if rec is None:
                continue
            worst = rec.get("worst") or {}
            cv = rec.get("cross_version") or {}
            if release == self.good:
                differs: bool | None = False
            elif rec["verdict"] in _BROKEN:  # the release fails where GOOD did not: a change
                differs = good.get(k, {}).get("verdict") not in _BROKEN
            elif cv.get("verdict") == "agree" and self.args.bitwise:
                differs = True
            else:
                differs = _SAME.get(cv.get("verdict", ""))
            out[k] = Step(differs, rec["verdict"], worst.get("ratio"), cv.get("verdict", "itself"))
        return out


def bisect_command(args) -> int:
    from crossbn.bugreport.finding import FindingError
    from crossbn.records import cache as cache_mod
    from crossbn.records.folders import FolderError, check_out_folder
    from crossbn.records.results import ResultsError
    from crossbn.records.sources import ReportError
    from crossbn.spec.catalogue import CatalogueError

    try:
        if not (args.finding or args.results or args.suite):
            raise ValueError("name what to bisect: --finding, --results or --suite")
        backends = _framework_backends(args)
        targets = _targets(args, backends)
        if not (args.n.isdigit() and int(args.n) > 0) and args.n != "auto":
            raise ValueError(f"-n {args.n}: a number of workers, or auto")
        out = check_out_folder(
            args.out or f"reports/bisect-{distribution(args.framework)}-{args.good}-{args.bad}",
            "--out" if args.out else "the bisect folder",
        )
        releases = between(list_releases(args.framework, index_url=args.index_url), args.framework, args.good, args.bad)
    except (ValueError, FindingError, CatalogueError, FolderError, ReleaseError, ReportError, ResultsError) as e:
        return _fail(str(e))
    backends = sorted({t[1] for t in targets}, key=backends.index)  # a finding's own backend, not all of them
    cache = cache_mod.resolve(args.cache) or cache_mod.default_root()
    print(
        f"crossbn bisect: {args.framework} {args.good} .. {args.bad}: {len(releases)} releases, "
        f"{len(targets)} result(s) on {', '.join(backends)}",
        flush=True,
    )
    run = Runner(args, releases, targets, out, cache)
    keys = [_key(t) for t in targets]
    try:  # the two ends are needed: a release between them that cannot be installed is skipped
        run.python(releases[0]), run.python(releases[-1])
    except ReleaseError as e:
        return _fail(f"{e} (GOOD and BAD must both be installed to bisect between them)")
    try:
        found = (sweep if args.sweep else bisect)(releases, keys, _announce(run))
    except ValueError as e:  # BAD could not run
        return _fail(str(e))
    if args.finding and not args.sweep and not found.answers[keys[0]].reproduced:
        return _fail(f"--finding {args.finding}: its outputs at BAD {args.bad} do not differ from GOOD {args.good}'s")
    from crossbn.app.bisect_view import summary, view

    shown = view(args, backends, found, run)
    _write(out, args, found, run, {g["first_bad"]: g["notes"] for g in shown["groups"] if g["notes"]})
    from crossbn.report.bisect_page import write as write_page

    page = write_page(shown, out)
    print(summary(shown))
    print(f"crossbn bisect: {out / 'bisect.json'}, {page}")
    return 0 if all(a.exact for a in found.answers.values() if a.reproduced) else 1


def _announce(run: Runner):
    def test(release: str, keys: list):
        print(f"  {release}: {len(keys)} result(s) ...", end=" ", flush=True)
        got = run(release, keys)
        if isinstance(got, str):
            print(f"skipped: {got}", flush=True)
        else:
            changed = sum(1 for s in got.values() if s.differs)
            print(f"{changed} differ from {run.good}", flush=True)
        return got

    return test


def _write(out: Path, args, found: Bisection, run: Runner, notes: dict) -> None:
    data = {
        "framework": args.framework,
        "notes": notes,  # first bad release -> its release notes (crossbn repro --bisect cites them)
        "good": args.good,
        "bad": args.bad,
        "bitwise": args.bitwise,
        "sweep": args.sweep,
        "releases": found.releases,
        "skipped": found.skipped,
        "answers": [
            {"case_id": k[0], "pytest_id": run.by_key[k][0].pytest_id, "backend": k[1], "device": k[2], **_answer(a)}
            for k, a in found.answers.items()
        ],
        "steps": {
            r: [{"case_id": k[0], "backend": k[1], "device": k[2], **asdict(s)} for k, s in steps.items()]
            for r, steps in found.steps.items()
        },
    }
    (out / "bisect.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _answer(a) -> dict:
    return {"last_good": a.last_good, "first_bad": a.first_bad, "untold": a.untold, "reproduced": a.reproduced}
