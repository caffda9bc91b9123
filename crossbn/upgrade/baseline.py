"""Baselines: a run's results kept, and a later run compared against them.

`save` stores results as the folder baselines/NAME/ (baseline.jsonl, diff-friendly, and meta.json; `crossbn
baseline save`), `load` reads a baseline or results, `compare` classifies every (base, new) pair of one key
(`CLASSES`; `crossbn compare`). A pair both of whose results fail is `regressed` when its ratio grew past
REGRESSION_FACTOR times the base's. `regressed` fails the compare; `parse_fail_on` adds other classes
(`--fail-on regressed,removed`: a backend that stopped running fails the gate too).

File format and design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from crossbn.spec.verdicts import FAILING

SCHEMA = 1
BASELINES = Path("baselines")
# A failing result whose error/bound ratio grows by more than this factor has
# regressed: rounding noise moves a ratio by a few tens of percent, not 2x.
REGRESSION_FACTOR = 2.0
CLASSES = ("regressed", "fixed", "improved", "changed", "unchanged", "new", "removed")
# what each class means, for the table and the docs
MEANING = {
    "regressed": "a new finding (passed in the baseline, fails now), or still failing with error/bound "
    "grown more than 2x",
    "fixed": "failed in the baseline, passes now",
    "improved": "still failing, error/bound shrunk more than 2x",
    "changed": "within the same verdict class, outputs differ in their bits (or match <-> convention)",
    "unchanged": "same verdict, bit-identical outputs",
    "new": "not in the baseline",
    "removed": "in the baseline, not run now",
}
FAILS = frozenset({"regressed"})  # what fails a comparison unless --fail-on says otherwise


def parse_fail_on(text: str | None) -> frozenset[str]:
    """--fail-on: comma-separated classes that fail the comparison (default: regressed)."""
    if not text:
        return FAILS
    classes = frozenset(c.strip() for c in text.split(",") if c.strip())
    unknown = sorted(classes - set(CLASSES))
    if unknown or not classes:
        raise BaselineError(
            f"{text}: unknown class(es) {', '.join(unknown) or '(none given)'}; known: {', '.join(CLASSES)}"
        )
    return classes


def failing(comparison: dict) -> dict[str, int]:
    """The classes of a written comparison (`summarize`) that fail it, with
    their counts; empty when it passes."""
    fails = comparison.get("fails") or sorted(FAILS)
    return {c: n for c, n in comparison["counts"].items() if c in fails and n}


class BaselineError(Exception):
    """A baseline or results source that cannot be used; the message names it."""


def _entry(rec: dict) -> dict:
    from crossbn.records.results import judged, observable_ratio

    ratio, where = judged(rec)
    return {
        "case_id": rec["case_id"],
        "backend": rec["backend"],
        "device": rec["device"],
        "pytest_id": rec.get("pytest_id", ""),
        "verdict": rec["verdict"],
        "version": rec.get("version", ""),
        "ratio": None if ratio is None else _num(ratio),
        "observable": where,
        "ratios": {n: _num(observable_ratio(o)) for n, o in (rec.get("observables") or {}).items()},
        "digests": rec.get("digests") or {},
    }


def _num(x: float):
    return x if math.isfinite(x) else repr(x)  # JSON has no inf/nan


def _key(e: dict) -> tuple:
    return (e["case_id"], e["backend"], e["device"])


def save(name: str, results, root: Path = BASELINES) -> Path:
    """Store `results` (a results.jsonl or run folder) as baselines/NAME."""
    from crossbn.records import environment
    from crossbn.records.sources import ReportError, results_file

    if not name or "/" in name or name.startswith("."):
        raise BaselineError(f"baseline name {name!r}: use a plain folder name")
    try:
        path = results_file(results)
    except ReportError as e:
        raise BaselineError(str(e)) from e
    entries = sorted(_entries(path), key=_key)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
    (folder / "baseline.jsonl").write_text(lines, encoding="utf-8")
    meta = {
        "schema": SCHEMA,
        "name": name,
        "source": str(path),
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "backends": {f"{e['backend']}/{e['device']}": e["version"] for e in entries},
        "run": environment.read(path.parent),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return folder


def load(source, root: Path = BASELINES) -> dict[tuple, dict]:
    """A baseline by name, or results (file or run folder) read as one."""
    if find(source, root) == "baseline":
        folder = root / str(source)
        _check_meta(folder / "meta.json")
        return {_key(e): e for e in _baseline_entries(folder / "baseline.jsonl")}
    from crossbn.records.sources import results_file

    return {_key(e): e for e in _entries(results_file(source))}


def find(source, root: Path = BASELINES) -> str:
    """What `source` names, "baseline" (baselines/NAME) or "results", checked
    before a run starts (`--compare befor` is a usage error, not a late failure);
    neither is a BaselineError listing the baselines there are."""
    from crossbn.records.sources import ReportError, results_file

    if (root / str(source) / "baseline.jsonl").is_file():
        return "baseline"
    try:
        results_file(source)
    except ReportError as e:
        known = sorted(p.name for p in root.glob("*") if (p / "baseline.jsonl").is_file()) if root.is_dir() else []
        there = f"baselines in {root}/: {', '.join(known)}" if known else f"no baselines in {root}/"
        raise BaselineError(f"{source}: neither a baseline nor results ({e}); {there}") from e
    return "results"


# What classify and describe need of every entry (and of every result read as one).
_NEEDED = ("case_id", "backend", "device", "verdict")


def _entries(path: Path) -> list[dict]:
    """Baseline entries of a results file; a file crossbn cannot read, or a
    record that is not a result, is a BaselineError naming it."""
    from crossbn.records.results import ResultsError, read

    try:
        records = read(path)
    except ResultsError as e:
        raise BaselineError(str(e)) from e
    out = []
    for n, rec in enumerate(records, 1):
        try:
            e = _entry(rec)
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise BaselineError(
                f"{path}: record {n}: not a crossbn result (needs {', '.join(_NEEDED)} and "
                f"well-formed observables): {type(err).__name__}: {err}"
            ) from err
        if not all(isinstance(e[k], str) for k in _NEEDED):
            raise BaselineError(f"{path}: record {n}: {', '.join(_NEEDED)} must be strings")
        out.append(e)
    return out


def _check_meta(path: Path) -> None:
    """meta.json, when there is one, must be JSON this crossbn can read: a
    baseline saved by a newer crossbn may mean something else by its lines."""
    if not path.is_file():
        return  # optional: baseline.jsonl alone is a baseline (e.g. written by hand)
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except ValueError as e:
        raise BaselineError(f"{path}: not JSON ({e}); truncated or not a crossbn baseline?") from e
    if not isinstance(meta, dict):
        raise BaselineError(f"{path}: not a JSON object ({{schema, name, source, ...}})")
    from crossbn.records.results import schema_problem

    problem = schema_problem(meta.get("schema", SCHEMA), SCHEMA)
    if problem:
        raise BaselineError(f"{path}: schema: {problem}")


def _baseline_entries(path: Path) -> list[dict]:
    """baseline.jsonl, every line an entry. Unlike a run's results, nothing
    appends to it: a line cut short is a damaged file, not a killed writer."""
    out = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                e = json.loads(line.decode("utf-8"))
            except ValueError as err:
                cut = "" if line.endswith(b"\n") else "; the file ends mid-line: truncated?"
                raise BaselineError(f"{where}: not JSON ({err}){cut}") from err
            if not isinstance(e, dict) or not all(isinstance(e.get(k), str) for k in _NEEDED):
                raise BaselineError(
                    f"{where}: not a baseline entry (an object with string fields {', '.join(_NEEDED)})"
                )
            out.append(e)
    return out


def _ratio(e: dict) -> float:
    r = e.get("ratio")
    return float("nan") if r is None else float(r)


def classify(base: dict | None, new: dict | None) -> str:
    if base is None:
        return "new"
    if new is None:
        return "removed"
    was, now = base["verdict"] in FAILING, new["verdict"] in FAILING
    if was and not now:
        return "fixed"
    if now and not was:
        return "regressed"  # a new finding
    if now:
        b, n = _ratio(base), _ratio(new)
        if math.isfinite(b) and (n > b * REGRESSION_FACTOR or (not math.isfinite(n) and n == n)):
            return "regressed"
        if math.isfinite(n) and n * REGRESSION_FACTOR < b:
            return "improved"
    if base["verdict"] != new["verdict"]:
        return "changed"
    if base.get("digests") and new.get("digests"):
        return "changed" if base["digests"] != new["digests"] else "unchanged"
    # results written before digests existed: the ratios are what can be compared
    return "changed" if base.get("ratios") != new.get("ratios") else "unchanged"


def compare(base: dict[tuple, dict], new: dict[tuple, dict]) -> list[dict]:
    """Every key of either side, with its class, sorted by class then key."""
    rows = []
    for k in sorted(set(base) | set(new)):
        b, n = base.get(k), new.get(k)
        rows.append({"key": k, "class": classify(b, n), "base": b, "new": n})
    rows.sort(key=lambda r: (CLASSES.index(r["class"]), r["key"]))
    return rows


def describe(row: dict) -> str:
    case, backend, device = row["key"]
    b, n = row["base"] or {}, row["new"] or {}
    name = n.get("pytest_id") or b.get("pytest_id") or case
    detail = f"{b.get('verdict', '–')} -> {n.get('verdict', '–')}"
    if b.get("ratio") is not None or n.get("ratio") is not None:
        detail += f", error/bound {_fmt(b.get('ratio'))} -> {_fmt(n.get('ratio'))}"
    if b.get("version") != n.get("version") and b and n:
        detail += f" ({b.get('version')} -> {n.get('version')})"
    return f"{row['class']:12s} {backend}/{device} {name}: {detail}"


def _fmt(r) -> str:
    return "–" if r is None else f"{float(r):.3g}"


COMPARISON_FILE = "comparison.json"
SIDE_BY_SIDE_FILE = "side-by-side.json"


def summarize(rows: list[dict], base: str, new: str, fails: frozenset[str] = FAILS) -> dict:
    """The counts per class, the classes that fail it, and every row that is
    not `unchanged` (what the report's comparison page shows)."""
    from collections import Counter

    counts = Counter(r["class"] for r in rows)
    return {
        "schema": SCHEMA,
        "base": str(base),
        "new": str(new),
        "factor": REGRESSION_FACTOR,
        "counts": {c: counts[c] for c in CLASSES if counts[c]},
        "fails": sorted(fails),
        "rows": [
            {
                "case_id": r["key"][0],
                "backend": r["key"][1],
                "device": r["key"][2],
                "class": r["class"],
                "line": describe(r),
                "base": r["base"],
                "new": r["new"],
            }
            for r in rows
            if r["class"] != "unchanged"
        ],
    }


def _write(out: Path, name: str, data: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / name)
    return data


def write_comparison(rows: list[dict], out: Path, base: str, new: str, fails: frozenset[str] = FAILS) -> dict:
    """`out/comparison.json`: this run against a baseline (`summarize`)."""
    return _write(out, COMPARISON_FILE, summarize(rows, base, new, fails))


def side_by_side(results, pairs: list[tuple[str, str]], fails: frozenset[str] = FAILS) -> list[dict]:
    """Two releases of one framework in one run: for each (reference, other)
    pair of backend names, the other's results classified against the
    reference's exactly as against a baseline (the reference is the release
    named first in --backends, the "before")."""
    entries = list(load(results).values())
    out = []
    for ref, other in pairs:

        def side(name):
            return {(e["case_id"], other, e["device"]): e for e in entries if e["backend"] == name}

        out.append(summarize(compare(side(ref), side(other)), ref, other, fails))
    return out


def write_side_by_side(comparisons: list[dict], out: Path) -> dict:
    return _write(out, SIDE_BY_SIDE_FILE, {"schema": SCHEMA, "comparisons": comparisons})
