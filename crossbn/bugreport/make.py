"""One finding -> a verified bug report folder: repro.py, ISSUE.md, case.toml, finding.json.

1. run the case on its backend and take the finding's signature (verdict and
   first departing stage; see attempt.py);
2. shrink it with Hypothesis while the same finding persists and its
   strongest public output stays past the floor (`shrink_floor`; shrink.py);
3. write repro.py for the smallest case, checking that output (script.py),
   and run it in a fresh process under the backend's interpreter (verify.py);
4. only when it exits 1, write the folder; otherwise say why not.
"""

from __future__ import annotations

import json
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

from crossbn.bugreport import casefile, happened, script, verify
from crossbn.bugreport.attempt import Attempt, Lab
from crossbn.bugreport.issue import OBSERVABLE_WORDS, issue_text, step_words
from crossbn.bugreport.observed import Statement, read as read_observed, statement
from crossbn.bugreport.shrink import shrink
from crossbn.oracle.inputs import generate
from crossbn.records.results import finite, judged, observable_ratio, ratio_rank
from crossbn.spec.verdicts import FAILING, Verdict
from crossbn.verdict.fingerprint import base_formulation

_EXPLAINED = ("deviation", "nan-mismatch")
CLEAR = 10.0  # error/bound: a discrepancy this far past the bound is plain to anyone


def shrink_floor(first: Attempt) -> float:
    """The error/bound ratio a smaller case must keep on the output repro.py
    checks: the original's strongest public output's, or CLEAR, whichever is
    less (a 1.5x excess in one element of a tiny case convinces nobody
    upstream). Without a public target, the ratio the verdict rests on."""
    ratio = first.strength if first.target is not None else judged(first.record)[0]
    return min(ratio_rank(ratio) if ratio is not None else 0.0, CLEAR)


@dataclass
class BugReport:
    status: str  # written | not-reproduced | no-finding | not-visible | no-template | unsupported
    message: str
    original: object  # the Case asked about
    minimized: object = None  # the smallest case the finding persists on
    folder: Path | None = None  # where the report was written (status "written")
    tried: int = 0  # smaller cases run while shrinking
    record: dict | None = None  # the minimized case's result record
    title: str = ""  # the issue's title (status "written")


def title(lab: Lab, at: Attempt, stated: Statement | None = None) -> str:
    """The issue's title: framework, output, dtype, how far past the bound (or
    which NaN/Inf is misplaced), and the cause where a formulation other than
    the documented one explains the outputs (observed.Statement.cause)."""
    fw = script.framework(lab.name)
    label = fw.label + (f" ({fw.variables['keras_backend']} backend)" if "keras_backend" in fw.variables else "")
    case, rec = at.case, at.record
    if rec["verdict"] == Verdict.ERROR:
        return f"{label} BatchNorm raises on a {case.dtype} input of shape {tuple(case.shape)}"
    step, _, what = at.target.partition(".")
    obs = (rec.get("observables") or {}).get(at.target) or {}
    measured = happened.measure(at)
    if measured is not None and measured.furthest.nonfinite:
        kind = f"is {measured.furthest.words()}"
    elif rec["verdict"] == Verdict.NAN_MISMATCH or obs.get("verdict") == Verdict.NAN_MISMATCH:
        kind = "is NaN or infinite where the exact value is not (or the other way round)"
    else:
        kind = f"is off by up to {observable_ratio(obs):.3g}x the {case.dtype} rounding-error bound"
    cause = stated.cause if stated is not None else ""
    return f"{label} BatchNorm: {case.dtype} {OBSERVABLE_WORDS[what]} {step_words(step)} {kind}" + (
        f" ({cause})" if cause else ""
    )


def make(
    case,
    lab: Lab,
    out_root: Path,
    budget: float,
    *,
    slug: str,
    known=(),
    count: int = 1,
    dtypes: str = "",
    worst: str = "",
    original_name: str = "",
    run: Path | None = None,
    regression: dict | None = None,
) -> BugReport:
    """`run`: the run folder the finding is from, whose conventions.jsonl (if
    any) the diagnosis is stated against (observed.py); `regression`: the
    `crossbn bisect` answer for it (regression.py), stated in the title and
    ISSUE.md."""
    first = lab.attempt(case)
    verdict = first.record["verdict"]
    if verdict not in FAILING:
        return BugReport(
            "no-finding",
            f"{lab.name}/{lab.device} gives {verdict} on this case now: no finding to report",
            case,
            record=first.record,
        )
    if verdict not in (*_EXPLAINED, "error"):
        return BugReport(
            "unsupported",
            f"a {verdict} is not written as a repro.py (the script's exit code "
            "could not tell it apart); rerun the case to see it",
            case,
            record=first.record,
        )
    signature, seen = first.signature, {case.id: first}
    floor = shrink_floor(first)

    def holds(candidate) -> bool:
        at = lab.attempt(candidate)
        seen[candidate.id] = at
        if at.signature != signature:
            return False
        if verdict == Verdict.ERROR:
            return True
        if first.target is None:  # no public output shows it even unshrunk: the finding alone must persist
            ratio = judged(at.record)[0]
            return ratio is None or ratio != ratio or ratio >= floor
        # what repro.py and ISSUE.md will show: the candidate's strongest public output
        return at.target is not None and ratio_rank(at.strength) >= floor

    minimized, tried = shrink(case, holds, budget) if budget > 0 else (case, 0)
    at = seen[minimized.id]
    if verdict in _EXPLAINED and at.target is None:
        return BugReport(
            "not-visible",
            "the finding shows in crossbn's probes of the kernel (its batch "
            "statistics) but in no public output a script can compare",
            case,
            minimized,
            tried=tried,
            record=at.record,
        )
    try:
        script.framework(lab.name)
    except script.NoTemplate as e:
        return BugReport("no-template", str(e), case, minimized, tried=tried, record=at.record)
    target = at.target or f"{minimized.steps[0]}.y"
    stated = statement(
        at.record.get("diagnosis") or {},
        minimized,
        base_formulation(minimized, **lab.backend.semantics()),
        read_observed(run, lab.name, lab.device, at.record.get("version", "")),
        f"{lab.name} on {lab.device}",
    )
    name = title(lab, at, stated)
    if regression:
        name += f" (regression in {regression['framework']} {regression['first_bad']})"
    # a framework that raised left no judged outputs, so the attempt kept no inputs: the same seeded ones
    inputs = at.inputs if at.inputs is not None else generate(minimized)
    text = script.render(
        case=minimized,
        inputs=inputs,
        backend_name=lab.name,
        backend=lab.backend,
        device=lab.device,
        version=at.record.get("version", ""),
        target=target,
        tolerance=at.tolerance if at.tolerance is not None else float("inf"),
        title=name,
        expect_error=verdict == Verdict.ERROR,
    )
    with tempfile.TemporaryDirectory(prefix="crossbn-repro-") as tmp:
        path = Path(tmp) / "repro.py"
        path.write_text(text, encoding="utf-8")
        ran = verify.run(path, lab.backend.interpreter)
    if not ran.reproduced:
        tail = "\n".join(ran.output.strip().splitlines()[-12:])
        return BugReport(
            "not-reproduced",
            f"repro.py did not reproduce the finding ({ran.status}, exit "
            f"{ran.returncode}); nothing written. Its output:\n{tail}",
            case,
            minimized,
            tried=tried,
            record=at.record,
        )

    files = {
        "repro.py": text,
        "ISSUE.md": issue_text(
            lab=lab,
            at=at,
            title=name,
            text=text,
            ran=ran,
            tried=tried,
            known=known,
            count=count,
            dtypes=dtypes,
            worst=worst,
            original=original_name or case.pytest_id,
            system=_system(lab),
            stated=stated,
            kept=None if first.target is None else (first.target, first.strength, floor),
            regression=regression,
        ),
        "case.toml": casefile.group_toml(
            minimized,
            f"{lab.name.split('@')[0]}_{minimized.id[:8]}",
            f"{name}\nminimized by crossbn from {original_name or case.pytest_id} ({case.id})",
        ),
        "finding.json": json.dumps(finite(at.record), indent=1, allow_nan=False) + "\n",
    }
    folder = out_root / slug
    folder.mkdir(parents=True, exist_ok=True)
    for file, content in files.items():
        (folder / file).write_text(content, encoding="utf-8")
    return BugReport(
        "written", f"reproduced ({ran.seconds:.1f} s); wrote {folder}", case, minimized, folder, tried, at.record, name
    )


def _system(lab: Lab) -> dict:
    from crossbn.records.environment import cpu_model, gpus

    found = gpus()
    return {
        "os": platform.platform(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "gpu": ", ".join(found) if found else "none",
    }
