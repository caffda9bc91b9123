"""Localization accuracy over planted faults: how many findings are put in
the right stage and given the right fingerprint, over the default suite.

    python -m benchmarks.localization [--every K] [--dtypes ...] [--faults ...] [--out DIR] [-n 2]

runs `crossbn run` on the planted backends (tests/backends/planted.py, one
fault each, through --backend-module) over every K-th case of `default`,
then prints per fault and overall: results, findings, the share localized
to the planted stage, the share fingerprinted right, and every miss grouped
by what was found instead; `localization.json` in DIR has every wrong finding.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossbn.oracle.formulation import Formulation

from .common import ROOT, run_crossbn

PLANTED = ROOT / "tests" / "backends" / "planted.py"
FINDINGS = ("deviation", "nan-mismatch", "convention")
GOALS = {"localized": 0.99, "fingerprinted": 0.95}

STATS = ("batch mean", "batch variance", "batch statistics")  # "batch statistics": mean or variance, hidden
GRADS = ("dbeta", "dgamma", "dx")
FORWARD = (*STATS, "inverse std", "normalized", "affine output")
EVERYWHERE = (*FORWARD, "running mean", "running variance", "eval statistics", *GRADS)


@dataclass(frozen=True)
class Expect:
    """Where a planted fault may first show (every stage it changes: one for a
    stage fault, several for a precision that changes every operation) and,
    for a formulation, the fingerprint's changes relative to the planted
    backend's documented semantics (canonical); "$dtype" stands for the
    case's dtype. changes None: a plain bug that no formulation explains."""

    stages: tuple[str, ...]
    changes: dict[str, Any] | None = None

    def changes_for(self, dtype: str) -> dict[str, Any] | None:
        if self.changes is None:
            return None
        return {k: (dtype if v == "$dtype" else v) for k, v in self.changes.items()}


_INPUT = (*STATS, "normalized", *GRADS)  # input rounding: every reduction, and elementwise in eval
EXPECT: dict[str, Expect] = {
    "mean": Expect(("batch mean",)),
    "mean-hidden": Expect(("batch mean", "batch statistics")),
    "var": Expect(("batch variance",)),
    "var-hidden": Expect(("batch variance", "batch statistics")),
    "invstd": Expect(("inverse std",)),
    "invstd-hidden": Expect(("inverse std",)),
    "invstd-eval": Expect(("inverse std",)),
    "normalized": Expect(("normalized",)),
    "normalized-hidden": Expect(("normalized",)),
    "normalized-eval": Expect(("normalized",)),
    "affine": Expect(("affine output",)),
    "affine-hidden": Expect(("affine output",)),
    "affine-eval": Expect(("affine output",)),
    "running-mean": Expect(("running mean",)),
    "running-mean-hidden": Expect(("running mean",)),
    "running-var": Expect(("running variance",)),
    "running-var-hidden": Expect(("running variance",)),
    "eval-batch-stats": Expect(("eval statistics",)),
    "eval-batch-stats-hidden": Expect(("eval statistics",)),
    "dbeta": Expect(("dbeta",)),
    "dgamma": Expect(("dgamma",)),
    "dgamma-eval": Expect(("dgamma",)),
    "dx": Expect(("dx",)),
    "dx-eval": Expect(("dx",)),
    "one-pass": Expect(("batch variance",), {"variance": "one-pass"}),
    "one-pass-hidden": Expect(("batch variance", "batch statistics"), {"variance": "one-pass"}),
    "one-pass-unclamped": Expect(("batch variance",), {"variance": "one-pass-unclamped"}),
    "one-pass-unclamped-hidden": Expect(("batch variance", "batch statistics"), {"variance": "one-pass-unclamped"}),
    "sequential": Expect((*STATS, *GRADS), {"order": "sequential"}),
    "one-pass-sequential": Expect(("batch variance",), {"variance": "one-pass", "order": "sequential"}),
    "eps-outside": Expect(("inverse std",), {"eps_in_root": False}),
    "unbiased-normalization": Expect(("inverse std",), {"norm_var": "unbiased"}),
    "bessel": Expect(("running variance",), {"running_var": "unbiased"}),
    "momentum-new": Expect(("running mean", "running variance"), {"momentum": "new"}),
    "clamped-eps": Expect(("inverse std",), {"eps_floor": 1e-5}),
    "folded-affine": Expect(("normalized", "affine output"), {"affine": "folded"}),
    "half-reductions": Expect((*STATS, *GRADS), {"reduce": "$dtype"}),
    "float32-compute": Expect(EVERYWHERE, {"compute": "float32"}),
    "float16-compute": Expect(EVERYWHERE, {"compute": "float16", "reduce": "float32"}),
    "folded-affine-f16": Expect(EVERYWHERE, {"compute": "float16", "reduce": "float32", "affine": "folded"}),
    "divide-f16": Expect(EVERYWHERE, {"compute": "float16", "reduce": "float32", "normalize": "divide"}),
    "welford-f16": Expect(EVERYWHERE, {"compute": "float16", "variance": "welford"}),
    "input-f16": Expect(_INPUT, {"input": "float16"}),
    "input-bf16": Expect(_INPUT, {"input": "bfloat16"}),
    "input-f16-half-reductions": Expect(_INPUT, {"input": "float16", "reduce": "float16"}),
}


def judge_finding(fault: str, rec: dict) -> dict:
    """(localized right, fingerprinted right) for one finding of `fault`, and why not."""
    exp = EXPECT[fault]
    loc = rec.get("localization") or {}
    diag = rec.get("diagnosis") or {}
    level = (diag.get("confidence") or {}).get("level")
    changes = exp.changes_for(rec.get("case", {}).get("dtype", ""))
    if changes is None:  # a plain bug: right unless a formulation is claimed to explain it
        fingerprinted = not diag or (level == "unexplained" if level else not diag.get("explains"))
    else:
        # named outright, or one of the candidates an ambiguous diagnosis says it cannot tell apart
        candidates = (diag.get("confidence") or {}).get("candidates") or []
        named = bool(diag) and diag.get("changes") == changes and level != "unexplained"
        fingerprinted = named or (level == "ambiguous" and Formulation(**changes).label() in candidates)
    return {"localized": loc.get("stage") in exp.stages, "fingerprinted": fingerprinted, "changes": changes}


@dataclass
class Tally:
    """One fault's (or all faults') counts."""

    results: int = 0
    unsupported: int = 0
    errors: int = 0
    findings: int = 0
    localized: int = 0
    fingerprinted: int = 0
    wrong: list[dict] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for k in ("results", "unsupported", "errors", "findings", "localized", "fingerprinted"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.wrong += other.wrong

    def share(self, what: str) -> float | None:
        return getattr(self, what) / self.findings if self.findings else None


def tally(records: list[dict]) -> dict[str, Tally]:
    """Per fault, from a run's records (backends named planted-<fault>; others ignored)."""
    out: dict[str, Tally] = {}
    for rec in records:
        fault = rec["backend"].removeprefix("planted-")
        if fault not in EXPECT:
            continue
        t = out.setdefault(fault, Tally())
        t.results += 1
        if rec["verdict"] == "unsupported":
            t.unsupported += 1
        elif rec["verdict"] in ("error", "crash", "timeout"):
            t.errors += 1
        if rec["verdict"] not in FINDINGS:
            continue
        t.findings += 1
        j = judge_finding(fault, rec)
        t.localized += j["localized"]
        t.fingerprinted += j["fingerprinted"]
        if not (j["localized"] and j["fingerprinted"]):
            t.wrong.append(_wrong(fault, rec, j))
    return out


def _wrong(fault: str, rec: dict, j: dict) -> dict:
    loc = rec.get("localization") or {}
    diag = rec.get("diagnosis") or {}
    return {
        "fault": fault,
        "case_id": rec["case_id"],
        "pytest_id": rec.get("pytest_id"),
        "group": rec.get("group"),
        "dtype": rec.get("case", {}).get("dtype"),
        "verdict": rec["verdict"],
        "wrong": [w for w in ("localized", "fingerprinted") if not j[w]],
        "stage": loc.get("stage"),
        "expected_stages": list(EXPECT[fault].stages),
        "observable": loc.get("observable"),
        "how": loc.get("how"),
        "source": (loc.get("source") or {}).get("how"),
        "probes": [{k: p.get(k) for k in ("name", "ran", "verdict", "why") if k in p} for p in loc.get("probes", [])],
        "diagnosis": {k: diag.get(k) for k in ("formulation", "changes", "explains", "score", "margin", "confidence")}
        if diag
        else None,
        "expected_changes": j["changes"],
    }


def _pct(t: Tally, what: str) -> str:
    s = t.share(what)
    return "" if s is None else f"{100 * s:.1f}% ({getattr(t, what)})"


def tables(per: dict[str, Tally]) -> str:
    """The per-fault and overall tables, the goals, and the misses by cause, in Markdown."""
    lines = [
        "| fault | results | unsupported | findings | localized right | fingerprinted right |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    total = Tally()
    for fault in EXPECT:
        if fault not in per:
            continue
        t = per[fault]
        total.add(t)
        lines.append(
            f"| {fault} | {t.results} | {t.unsupported} | {t.findings} | {_pct(t, 'localized')} | {_pct(t, 'fingerprinted')} |"
        )
    lines.append(
        f"| **all** | {total.results} | {total.unsupported} | {total.findings} | "
        f"**{_pct(total, 'localized')}** | **{_pct(total, 'fingerprinted')}** |"
    )
    lines.append("")
    for what, goal in GOALS.items():
        s = total.share(what)
        met = s is not None and s >= goal
        lines.append(
            f"- goal: >= {100 * goal:.0f}% of findings {what} right: "
            f"{'no findings' if s is None else f'{100 * s:.1f}%'}, {'met' if met else '**not met**'}"
        )
    if total.errors:
        lines.append(f"- {total.errors} results were errors, crashes or timeouts (not findings)")
    lines += ["", misses(total.wrong)]
    return "\n".join(lines)


def misses(wrong: list[dict]) -> str:
    """The wrong findings grouped by fault and what was found instead, largest first."""
    if not wrong:
        return "No wrong findings."
    groups: Counter = Counter()
    example: dict = {}
    for w in wrong:
        found = (
            f"stage {w['stage']} ({w['how']})"
            if "localized" in w["wrong"]
            else f"stage right; diagnosis {_label(w['diagnosis'])}"
        )
        if "localized" in w["wrong"] and "fingerprinted" in w["wrong"]:
            found += f"; diagnosis {_label(w['diagnosis'])}"
        key = (w["fault"], found)
        groups[key] += 1
        example.setdefault(key, w)
    lines = [
        "| fault | found instead | findings | example case (dtype, group) | probes that ran |",
        "|---|---|---:|---|---|",
    ]
    for (fault, found), n in sorted(groups.items(), key=lambda kv: (-kv[1], kv[0])):
        w = example[(fault, found)]
        probes = ", ".join(f"{p['name']}: {p.get('verdict')}" for p in w["probes"] if p.get("ran")) or "none"
        lines.append(f"| {fault} | {found} | {n} | {w['case_id']} ({w['dtype']}, {w['group']}) | {probes} |")
    return "\n".join(lines)


def _label(diag: dict | None) -> str:
    if not diag:
        return "none"
    changes = ",".join(f"{k}={v}" for k, v in (diag.get("changes") or {}).items()) or "as documented"
    level = (diag.get("confidence") or {}).get("level")
    return f"{changes} (explains {diag.get('explains')}{f', {level}' if level else ''})"


def sample(every: int, dtypes: list[str] | None, folder: Path) -> tuple[Path, int]:
    """Every `every`-th case of `default` (of the given dtypes), in catalogue order, as a catalogue file."""
    from crossbn.bugreport.casefile import group_toml
    from crossbn.spec.suites import load_suite

    cases = [c for c in load_suite("default") if dtypes is None or c.dtype in dtypes][:: max(every, 1)]
    path = folder / f"default-every-{every}.toml"
    path.write_text("\n".join(group_toml(c, c.group or "sample") for c in cases), encoding="utf-8")
    return path, len(cases)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.localization", description=__doc__.split("\n\n")[0])
    p.add_argument("--every", type=int, default=4, help="every K-th case of `default` (default 4; 1: all)")
    p.add_argument("--dtypes", help="comma-separated case dtypes (default: all)")
    p.add_argument("--faults", help="comma-separated planted faults (default: all)")
    p.add_argument("--out", type=Path, default=Path("reports/localization"), help="the run's folder")
    p.add_argument("-n", default="2", help="crossbn run's workers (default 2)")
    p.add_argument("--diagnosis", default="grouped", choices=("grouped", "each"), help="crossbn run --diagnosis")
    args = p.parse_args(argv)
    faults = args.faults.split(",") if args.faults else list(EXPECT)
    unknown = [f for f in faults if f not in EXPECT]
    if unknown:
        print(
            f"python -m benchmarks.localization: unknown faults {unknown}; known: {', '.join(EXPECT)}", file=sys.stderr
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    suite, n_cases = sample(args.every, args.dtypes.split(",") if args.dtypes else None, args.out)
    backends = ",".join(f"planted-{f}" for f in faults)
    extra = ("--backend-module", str(PLANTED), "--diagnosis", args.diagnosis)
    start = time.perf_counter()
    seconds, run = run_crossbn(suite, backends, args.n, args.out / "run", extra=extra)
    from .common import records

    per = tally(records(run))
    head = (
        f"Localization accuracy: {len(faults)} planted faults, {n_cases} cases (every {args.every}th of "
        f"`default`{f', {args.dtypes}' if args.dtypes else ''}), -n {args.n}, --diagnosis {args.diagnosis}; "
        f"crossbn run {seconds:.0f} s"
    )
    print(head + "\n\n" + tables(per))
    total = Tally()
    for t in per.values():
        total.add(t)
    raw = {
        "command": " ".join(["python -m benchmarks.localization", *(argv if argv is not None else sys.argv[1:])]),
        "seconds": seconds,
        "wall": time.perf_counter() - start,
        "cases": n_cases,
        "per_fault": {f: {k: v for k, v in vars(t).items() if k != "wrong"} for f, t in per.items()},
        "overall": {k: v for k, v in vars(total).items() if k != "wrong"},
        "wrong": total.wrong,
    }
    (args.out / "localization.json").write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    print(f"\nevery wrong finding: {args.out / 'localization.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
