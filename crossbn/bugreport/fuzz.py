"""`crossbn fuzz`: search the case space with Hypothesis for new findings.

`search` runs every generated case (`cases`) on every chosen backend and steers Hypothesis towards larger
disagreements; `run` is the subcommand. A new root cause's first case is shrunk (shrink.py), saved in
crossbn/cases/found/ and, where repro.py reproduces it, given a bug report. Deterministic: the same `--seed` and
`--examples` give the same cases, findings and saved files; `--budget` caps the search's wall-clock time. Every
record is appended to <out>/fuzz.jsonl as it is made.

Design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, assume, given, seed as hypothesis_seed, settings, strategies as st, target

from crossbn.spec.case import DISTRIBUTIONS, LAYOUTS, Case
from crossbn.spec.dtypes import NAMES as DTYPES
from crossbn.spec.verdicts import FAILING

MAX_ELEMENTS = 4096  # per step: small cases run fast and shrink fast


class _Stop(Exception):
    """The wall-clock budget is spent."""


@st.composite
def cases(draw, dtypes=DTYPES) -> Case:
    """BatchNorm cases of every kind crossbn has, small enough to run in milliseconds."""
    rank = draw(st.integers(2, 5))
    shape = [draw(st.integers(1, 16)), draw(st.integers(1, 8))] + [draw(st.integers(1, 6)) for _ in range(rank - 2)]
    while math.prod(shape) > MAX_ELEMENTS:
        shape[0] = max(1, shape[0] // 2) if shape[0] > 1 else shape[0]
        if math.prod(shape) > MAX_ELEMENTS:
            shape[-1] = max(1, shape[-1] // 2)
    track = draw(st.booleans())
    train_steps = draw(st.integers(0, 3))
    return Case(
        suite="fuzz",
        group="fuzz",
        shape=tuple(shape),
        layout=draw(st.sampled_from(LAYOUTS)),
        dtype=draw(st.sampled_from(tuple(dtypes))),
        eps=draw(st.sampled_from((1e-5, 1e-3, 0.1, 1e-8, 0.0))),
        momentum=draw(st.sampled_from((0.9, 0.99, 0.5, 0.1, 0.0, 1.0))),
        cumulative=track and draw(st.booleans()),
        affine=draw(st.booleans()),
        track_running_stats=track,
        train_steps=train_steps,
        eval_step=train_steps == 0 or draw(st.booleans()),
        gradients=draw(st.booleans()),
        distribution=draw(st.sampled_from(DISTRIBUTIONS)),
        scale=draw(st.sampled_from((1.0, 1e-3, 1e3, 1e-2, 1e2))),
        offset_ratio=draw(st.sampled_from((0.0, 1.0, 10.0, 100.0, -100.0, 1e3, 1e4))),
        seed=draw(st.integers(0, 2**16)),
    )


def add_parser(sub) -> None:
    fz = sub.add_parser(
        "fuzz",
        help="search for new findings with Hypothesis; save them in crossbn/cases/found/",
        description="Generated cases run on each backend; hypothesis.target steers towards the "
        "worst error/bound ratios. Each new root cause is shrunk, saved as a "
        "regression case (crossbn/cases/found/, included by the default suite) and, where "
        "repro.py reproduces it, given a bug report. Exit 0; 2 for bad usage.",
    )
    fz.add_argument("--backends", required=True, help="comma-separated backend names")
    fz.add_argument("--device", default="cpu", help="device (default: cpu)")
    fz.add_argument("--budget", default="10m", help="wall-clock cap on the search, e.g. 90s, 10m (default: 10m)")
    fz.add_argument("--dtypes", default=",".join(DTYPES), help=f"dtypes to generate (default: {','.join(DTYPES)})")
    fz.add_argument("--examples", type=int, default=1000, help="cases to generate at most (default: 1000)")
    fz.add_argument("--seed", type=int, default=0, help="Hypothesis's seed: the same seed, the same search")
    fz.add_argument("--shrink-budget", default="60s", help="time to shrink each new finding (default: 60s)")
    fz.add_argument("--known", metavar="FILE", help="known differences: findings they match are not new")
    fz.add_argument(
        "--found", help="where regression cases go (default: crossbn/cases/found in crossbn's cases folder)"
    )
    fz.add_argument("--out", help="records and bug reports (default: reports/fuzz-<time>)")
    fz.add_argument("--backend-module", action="append", default=[], help="a .py file with extra backends")
    fz.set_defaults(func=run)


def search(labs, *, examples: int, budget: float, seed: int, known, sink, dtypes=DTYPES) -> tuple[dict, int]:
    """({root-cause key: the first record showing it}, cases run)."""
    from crossbn.bugreport.group import key
    from crossbn.records.known import first_match
    from crossbn.records.results import finite, judged

    new: dict = {}
    count = [0]
    deadline = time.monotonic() + budget

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.target],
        suppress_health_check=list(HealthCheck),
    )
    @given(cases(dtypes))
    def explore(case):
        if time.monotonic() > deadline:
            raise _Stop
        runs = [lab for lab in labs if lab.backend.applies(case) and lab.backend.supports(case) is None]
        assume(runs)  # a case no chosen backend runs is not an example
        count[0] += 1
        for lab in runs:
            rec = lab.attempt(case).record
            sink.write(json.dumps(finite(rec), allow_nan=False) + "\n")
            sink.flush()
            ratio = judged(rec)[0]
            if ratio is not None:
                target(min(300.0, math.log10(ratio)) if ratio > 0 else -300.0, label=lab.name)
            if rec["verdict"] in FAILING and first_match(known, rec) is None:
                new.setdefault(key(rec), rec)

    try:
        explore()
    except _Stop:
        pass
    return new, count[0]


def run(args) -> int:
    from crossbn.bugreport.attempt import Lab, LabError
    from crossbn.bugreport.casefile import group_toml
    from crossbn.bugreport.make import make
    from crossbn.execution.limits import seconds
    from crossbn.records import known as known_mod
    from crossbn.records.naming import slug
    from crossbn.spec.case import Case
    from crossbn.spec.catalogue import CASES_DIR

    try:
        budget, shrink_budget = seconds(args.budget), seconds(args.shrink_budget, "--shrink-budget")
        dtypes = tuple(d.strip() for d in args.dtypes.split(",") if d.strip())
        if not dtypes or set(dtypes) - set(DTYPES):
            raise ValueError(f"--dtypes {args.dtypes!r}: choose from {', '.join(DTYPES)}")
        if args.examples < 1:
            raise ValueError(f"--examples {args.examples}: must be at least 1")
        known = known_mod.load(args.known) if args.known else []
        labs = [
            Lab(name.strip(), args.device, tuple(args.backend_module))
            for name in args.backends.split(",")
            if name.strip()
        ]
        if not labs:
            raise ValueError("--backends: name at least one backend")
    except (LabError, ValueError, known_mod.KnownError) as e:
        print(f"crossbn fuzz: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or Path("reports") / time.strftime("fuzz-%Y%m%d-%H%M%S"))
    found = Path(args.found) if args.found else CASES_DIR / "found"
    out.mkdir(parents=True, exist_ok=True)
    found.mkdir(parents=True, exist_ok=True)
    print(
        f"crossbn fuzz: {', '.join(lab.name for lab in labs)} on {args.device}, seed {args.seed}, up to "
        f"{args.examples} cases or {budget:g} s; records -> {out / 'fuzz.jsonl'}",
        flush=True,
    )
    start = time.perf_counter()
    try:
        with (out / "fuzz.jsonl").open("a", encoding="utf-8") as sink:
            new, ran = search(
                labs, examples=args.examples, budget=budget, seed=args.seed, known=known, sink=sink, dtypes=dtypes
            )
        print(
            f"crossbn fuzz: {ran} case(s) in {time.perf_counter() - start:.0f} s; {len(new)} new root cause(s)",
            flush=True,
        )
        by_name = {lab.name: lab for lab in labs}
        for (backend, device, kind, stage, cause), rec in sorted(new.items()):
            lab = by_name[backend]
            case = Case.from_dict(rec["case"])
            made = make(
                case,
                lab,
                out / "bug-reports",
                shrink_budget,
                slug=slug(rec),
                known=known,
                original_name=rec.get("pytest_id", case.pytest_id),
            )
            line = f"  {backend}/{device} {stage or kind} | {cause or '-'}: {made.status}"
            if made.minimized is not None:
                saved = found / f"{backend.split('@')[0]}-{made.minimized.id}.toml"
                if not saved.exists():
                    why = made.title or f"{backend} {rec['verdict']}: {stage or kind} | {cause}"
                    saved.write_text(
                        group_toml(
                            made.minimized,
                            f"found_{backend.split('@')[0]}_{made.minimized.id[:8]}",
                            f"found by crossbn fuzz --seed {args.seed}: {why}",
                        ),
                        encoding="utf-8",
                    )
                line += f", {made.minimized.pytest_id} -> {saved}"
            if made.folder is not None:
                line += f", report {made.folder}"
            print(line, flush=True)
    finally:
        for lab in labs:
            lab.close()
    return 0
