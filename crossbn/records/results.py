"""Result records: what one (case, backend, device) judgement leaves.

One record per (case, backend, device), appended and flushed the moment it exists, so a killed run loses nothing
finished (crossbn/records/store.py writes the files). `make_record` builds a record, `read` reads a results file
(skipping a torn last line), `key` and `stable` give its sort key and its content without the volatile fields
(`VOLATILE`), `judged` the error/bound ratio its verdict rests on. Records carry `schema` (`SCHEMA`, version 1).

Record fields and design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, NotRequired, TypedDict

SCHEMA = 1
# Fields that depend on scheduling and timing, not on the result itself.
VOLATILE = ("seconds", "backend_seconds", "timings", "worker", "time", "backend_info")


# A number a record holds: non-finite floats are stored as their repr ("inf", "nan").
Number = float | str


class ObservableRecord(TypedDict):
    """One observable's comparison as a record holds it (verdict/compare.py's ObservableResult)."""

    name: str
    verdict: str
    ratio: Number
    max_abs: Number
    max_rel: Number
    max_ulp: Number
    where: list[int]
    expected_at: Number
    actual_at: Number
    bound_at: Number
    n_over: int
    size: int
    dtype: str
    convention_ratio: Number | None
    n_unjudged: int
    note: str
    worst_elements: list[dict[str, Any]]
    per_channel: list[Number] | None


class WorstObservable(TypedDict):
    observable: str
    ratio: Number
    verdict: str


class Record(TypedDict):
    """One line of results.jsonl: a (case, backend, device) and its verdict, as make_record makes it."""

    schema: int
    case_id: str
    pytest_id: str
    suite: str
    group: str
    case: dict[str, Any]
    backend: str
    version: str
    device: str
    device_name: str
    verdict: str
    reason: str
    worst: WorstObservable | None
    observables: dict[str, ObservableRecord]
    not_exposed: list[str]
    unexpected: list[str]
    unjudged: int
    localization: dict[str, Any] | None
    diagnosis: dict[str, Any] | None
    inputs: dict[str, Any] | None
    digests: dict[str, str]
    cross_device: dict[str, Any] | None
    interpreter: str | None
    cross_version: dict[str, Any] | None
    backend_info: dict[str, Any]
    seconds: float
    backend_seconds: float
    timings: dict[str, float]
    worker: str
    time: str
    # set after judging: the known-differences entry a finding matched (the plugin)
    known: NotRequired[dict[str, Any]]


def finite(x):
    """JSON has no inf/nan: store them as strings, as Python spells them."""
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x


def number(x) -> float:
    """Records spell non-finite floats as strings ('inf', 'nan'); None is nan."""
    if x is None:
        return float("nan")
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def ratio_rank(r: float) -> float:
    """A ratio as a sort key: NaN ranks as the worst (inf)."""
    return float("inf") if r != r else r


def observable_ratio(o: dict) -> float:
    """An observable's ratio under the backend's declared semantics."""
    conv = o.get("convention_ratio")
    return number(conv if conv is not None else o.get("ratio"))


def judged(rec: dict) -> tuple[float | None, str]:
    """(the error/bound ratio the verdict rests on, the observable or layer
    where it is reached); (None, "") when nothing was compared (unsupported,
    error, crash, timeout). The ratio is under the backend's declared
    semantics (an observable's convention_ratio where it has one), the
    largest over the observables; a model result's, its worst layer's
    δ/bound. The report ranks by it and baselines compare it."""
    worst = rec.get("worst") or {}
    if rec.get("layers") and worst:
        return number(worst.get("ratio")), worst.get("observable") or ""
    obs = rec.get("observables") or {}
    if not obs:
        return None, worst.get("observable") or ""
    name = max(obs, key=lambda n: ratio_rank(observable_ratio(obs[n])))
    return observable_ratio(obs[name]), name


def make_record(
    *,
    case,
    backend: str,
    device: str,
    verdict: str,
    version: str = "",
    device_name: str = "",
    reason: str = "",
    comparison=None,
    seconds: float = 0.0,
    backend_seconds: float = 0.0,
    cross_device: dict | None = None,
    backend_info: dict | None = None,
    localization: dict | None = None,
    diagnosis: dict | None = None,
    inputs: dict | None = None,
    digests: dict | None = None,
    interpreter: str | None = None,
    cross_version: dict | None = None,
    timings: dict | None = None,
) -> Record:
    observables: dict[str, ObservableRecord] = {}
    worst: WorstObservable | None = None
    not_exposed: list[str] = []
    unexpected: list[str] = []
    if comparison is not None:
        observables = {k: o.to_dict() for k, o in comparison.observables.items()}
        w = comparison.worst_observable
        worst = None if w is None else {"observable": w.name, "ratio": w.ratio, "verdict": w.verdict}
        not_exposed, unexpected = comparison.not_exposed, comparison.unexpected
    record: Record = {
        "schema": SCHEMA,
        "case_id": case.id,
        "pytest_id": case.pytest_id,
        "suite": case.suite,
        "group": case.group,
        "case": case.to_dict(),
        "backend": backend,
        "version": version,
        "device": device,
        "device_name": device_name,
        "verdict": verdict,
        "reason": reason,
        "worst": worst,
        "observables": observables,
        "not_exposed": not_exposed,
        "unexpected": unexpected,
        "unjudged": sum(o["n_unjudged"] for o in observables.values()),
        "localization": localization,
        "diagnosis": diagnosis,
        "inputs": inputs,
        "digests": digests or {},
        "cross_device": cross_device,
        "interpreter": interpreter,
        "cross_version": cross_version,
        "backend_info": backend_info or {},
        "seconds": round(seconds, 6),
        "backend_seconds": round(backend_seconds, 6),
        "timings": timings or {},
        "worker": worker_id(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return finite(record)


def worker_id() -> str:
    """ "main" in a plain or controller process, "gw0", "gw1", ... in xdist workers."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


class ResultsError(ValueError):
    """A results file that is not crossbn's JSON Lines: the message names the file and line."""


def read(path: Path) -> list[dict]:
    """Records of one JSON Lines file (an empty file: none).

    A torn last line — no newline after it, begun with "{" and not decodable:
    what a killed writer leaves — is skipped, so an interrupted run's results
    stay readable.
    Anything else that is not one JSON object per line (a bad line before the
    last, a file that is not JSON at all, a record from a newer crossbn) is a
    ResultsError naming the file and the line. Blank lines are skipped."""
    out = []
    with open(path, "rb") as f:  # bytes: a line that is not UTF-8 is named, not a traceback
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line.decode("utf-8"))
            except ValueError as e:  # UnicodeDecodeError and JSONDecodeError both are
                # Only the last line can lack its newline; begun as a record
                # is begun, it is one a killed writer cut short: skip it.
                if not line.endswith(b"\n") and line.lstrip().startswith(b"{"):
                    break
                raise ResultsError(
                    f"{path}:{n}: not a JSON record ({e}); a results file holds one JSON object per line"
                ) from e
            out.append(_record(f"{path}:{n}", value))
    return out


def _record(where: str, rec) -> dict:
    """A decoded line, checked to be a record this crossbn can read."""
    if not isinstance(rec, dict):
        kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(rec), "number")
        raise ResultsError(f"{where}: a JSON {kind}, not a record (one JSON object per line)")
    problem = schema_problem(rec.get("schema", SCHEMA), SCHEMA)
    if problem:
        raise ResultsError(f"{where}: schema: {problem}")
    return rec


def schema_problem(schema, newest: int) -> str | None:
    """Why a file's `schema` cannot be read by this crossbn (reads 1 to `newest`), or None."""
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        return f"{schema!r} is not a version number (1 to {newest})"
    if schema > newest:
        return f"written by a newer crossbn: schema {schema}, this crossbn reads up to {newest}"
    return None


def key(record: dict) -> tuple:
    return (record["case_id"], record["backend"], record["device"])


def stable(record: dict) -> dict:
    """The record without its scheduling/timing fields (for comparing runs)."""
    return {k: v for k, v in record.items() if k not in VOLATILE}


def failure_message(record: dict) -> str:
    """One paragraph saying what disagrees, how badly and where."""
    from crossbn.spec.verdicts import FAILING, UNJUDGED

    head = f"{record['pytest_id']} (case {record['case_id']}) on {record['backend']}/{record['device']}"
    if not record["observables"]:
        return f"{head}: {record['verdict']}: {record['reason']}"
    lines = [f"{head}: {record['verdict']}" + (f" ({record['reason']})" if record["reason"] else "")]
    for name, o in record["observables"].items():
        if o["verdict"] not in FAILING:
            continue
        if not o["where"]:  # nothing to locate: NaN/Inf positions or shape differ
            lines.append(f"  {name}: {o['verdict']}: {o['note']}")
            continue
        lines.append(
            (
                f"  {name}: error/bound = {float(o['ratio']):.3g}; {o['n_over']}/{o['size']} elements over bound; "
                f"max abs {float(o['max_abs']):.3g}, max rel {float(o['max_rel']):.3g}, "
                f"{float(o['max_ulp']):.3g} ulp ({o['dtype']}); worst at {o['where']}: "
                f"expected {o['expected_at']!r}, got {o['actual_at']!r}, bound {float(o['bound_at']):.3g}"
            )
            + (f" ({o['note']})" if o["note"] else "")
        )
    if record.get("unjudged"):
        lines.append(f"  ({record['unjudged']} element(s) not judged: {UNJUDGED})")
    return "\n".join(lines)
