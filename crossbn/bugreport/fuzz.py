"""`crossbn fuzz`: search the case space with Hypothesis for new findings.

`search` runs every generated case (`cases`) on every chosen backend and device and steers Hypothesis towards
larger disagreements; `run` is the subcommand. A new root cause's first case is shrunk (shrink.py), saved as a
one-case catalogue in `--found` (default <out>/found; the default suite's crossbn/cases/found only when named) and,
where repro.py reproduces it, given a bug report. Deterministic: the same `--seed` and `--examples` give the same
cases, findings and saved files; `--budget` caps the search's wall-clock time. Every record is appended to
<out>/fuzz.jsonl as it is made.

Design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from crossbn.bugreport.helptext import examples, wrapped
from crossbn.spec.case import DISTRIBUTIONS, LAYOUTS, Case
from crossbn.spec.dtypes import NAMES as DTYPES
from crossbn.spec.verdicts import FAILING

MAX_ELEMENTS = 4096  # per step: small cases run fast and shrink fast


class _Stop(Exception):
    """The wall-clock budget is spent."""


def cases(dtypes=DTYPES):
    """A Hypothesis strategy: BatchNorm cases of every kind crossbn has, small enough to run in milliseconds."""
    # Hypothesis is imported when a search starts, not with the module: `crossbn run` builds every
    # subcommand's parser before pytest starts, and a plugin's package imported then cannot be rewritten
    from hypothesis import strategies as st

    return st.composite(_case)(dtypes)


def _case(draw, dtypes) -> Case:
    from hypothesis import strategies as st

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
        help="search for new findings with Hypothesis; save each as a regression case",
        description=wrapped(
            "Generated cases run on each backend and device; hypothesis.target steers towards "
            "the worst error/bound ratios. Each new root cause is shrunk, saved as a one-case "
            "catalogue in --found (default: <out>/found; name crossbn/cases/found to add it to the "
            "default suite) and, where repro.py reproduces it, given a bug report under "
            "<out>/bug-reports. Exit 0; 2 for bad usage."
        ),
        epilog=examples(
            "crossbn fuzz --backends torch,keras-jax --budget 10m --seed 0",
            "crossbn fuzz --backends torch --devices cpu,cuda --dtypes float16 --out reports/fuzz-f16",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fz.add_argument("--backends", required=True, help="comma-separated backend names")
    fz.add_argument("--devices", default="cpu", help="comma-separated devices: cpu, cuda (default: cpu)")
    fz.add_argument("--device", dest="device_alias", help=argparse.SUPPRESS)  # before --devices; kept working
    fz.add_argument("--budget", default="10m", help="wall-clock cap on the search, e.g. 90s, 10m (default: 10m)")
    fz.add_argument("--dtypes", default=",".join(DTYPES), help=f"dtypes to generate (default: {','.join(DTYPES)})")
    fz.add_argument("--examples", type=int, default=1000, help="cases to generate at most (default: 1000)")
    fz.add_argument("--seed", type=int, default=0, help="Hypothesis's seed: the same seed, the same search")
    fz.add_argument("--shrink-budget", default="60s", help="time to shrink each new finding (default: 60s)")
    fz.add_argument("--known", metavar="FILE", help="known differences: findings they match are not new")
    fz.add_argument(
        "--found",
        metavar="DIR",
        help="where regression cases go (default: <out>/found; crossbn/cases/found adds them to the default suite)",
    )
    fz.add_argument("--out", help="records and bug reports (default: reports/fuzz-<time>)")
    fz.add_argument("--backend-module", action="append", default=[], help="a .py file with extra backends")
    fz.set_defaults(func=run)


def search(labs, *, examples: int, budget: float, seed: int, known, sink, dtypes=DTYPES) -> tuple[dict, int]:
    """({root-cause key: the first record showing it}, cases run)."""
    from hypothesis import HealthCheck, Phase, assume, given, seed as hypothesis_seed, settings, target

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
                label = lab.name if lab.device == "cpu" else f"{lab.name}/{lab.device}"  # cpu: as before devices
                target(min(300.0, math.log10(ratio)) if ratio > 0 else -300.0, label=label)
            if rec["verdict"] in FAILING and first_match(known, rec) is None:
                new.setdefault(key(rec), rec)

    try:
        explore()
    except _Stop:
        pass
    return new, count[0]


def _devices(args) -> list[str]:
    text = args.devices
    if args.device_alias is not None:
        print("crossbn fuzz: --device is now --devices (as for crossbn run)", file=sys.stderr)
        text = args.device_alias
    devices = list(dict.fromkeys(d.strip() for d in text.split(",") if d.strip()))
    if not devices:
        raise ValueError(f"--devices {text!r}: name at least one device (cpu, cuda)")
    return devices


def run(args) -> int:
    from crossbn.bugreport.attempt import Lab, LabError
    from crossbn.bugreport.casefile import group_toml
    from crossbn.bugreport.make import make
    from crossbn.execution.limits import seconds
    from crossbn.records import known as known_mod
    from crossbn.records.folders import FolderError, check_out_folder
    from crossbn.records.naming import slug
    from crossbn.spec.case import Case

    labs: list = []
    try:
        budget, shrink_budget = seconds(args.budget), seconds(args.shrink_budget, "--shrink-budget")
        dtypes = tuple(d.strip() for d in args.dtypes.split(",") if d.strip())
        if not dtypes or set(dtypes) - set(DTYPES):
            raise ValueError(f"--dtypes {args.dtypes!r}: choose from {', '.join(DTYPES)}")
        if args.examples < 1:
            raise ValueError(f"--examples {args.examples}: must be at least 1")
        known = known_mod.load(args.known) if args.known else []
        devices = _devices(args)
        names = [name.strip() for name in args.backends.split(",") if name.strip()]
        if not names:
            raise ValueError("--backends: name at least one backend")
        # every lab made (and so every name checked) before any runs; a worker starts on first use
        labs = [Lab(name, device, tuple(args.backend_module)).require() for name in names for device in devices]
        out = check_out_folder(args.out or Path("reports") / time.strftime("fuzz-%Y%m%d-%H%M%S"), "--out")
        found = check_out_folder(args.found, "--found") if args.found else out / "found"
    except (LabError, ValueError, known_mod.KnownError, FolderError) as e:
        print(f"crossbn fuzz: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"crossbn fuzz: {', '.join(dict.fromkeys(lab.name for lab in labs))} on {', '.join(devices)}, seed "
        f"{args.seed}, up to {args.examples} cases or {budget:g} s; records -> {out / 'fuzz.jsonl'}, "
        f"regression cases -> {found}",
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
        by_name = {(lab.name, lab.device): lab for lab in labs}
        for (backend, device, kind, stage, cause), rec in sorted(new.items()):
            lab = by_name[backend, device]
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
                found.mkdir(parents=True, exist_ok=True)
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
