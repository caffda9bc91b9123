"""What a report is built from: one or more run folders, merged.

A source is a `results.jsonl` file or the folder holding one (a run, a
shard, another machine's run). Beside it may lie `run.json` (the
environment, crossbn/records/environment.py) and `conventions.jsonl` (crossbn
conventions). Records of all sources are merged by (case id, backend,
device) the way store.merge does: a later source's record replaces an
earlier one's. Nothing here imports a framework.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from crossbn.records import environment
from crossbn.records.results import ResultsError, key, read

CONVENTIONS_FILE = "conventions.jsonl"
COMPARISON_FILE = "comparison.json"  # crossbn/upgrade/baseline.py writes them
SIDE_BY_SIDE_FILE = "side-by-side.json"


class ReportError(Exception):
    """A source that cannot be read; the message names it."""


@dataclass
class Source:
    path: Path  # the results.jsonl file
    records: list[dict]
    run: dict | None  # run.json beside it, if any
    conventions: list[dict]  # conventions.jsonl beside it, if any

    @property
    def label(self) -> str:
        """The run folder's name (never an absolute path: the report is moved and attached)."""
        return self.path.parent.name or str(self.path.parent)


@dataclass
class Sources:
    sources: list[Source]
    records: list[dict] = field(default_factory=list)  # merged, sorted by key
    conventions: list[dict] = field(default_factory=list)  # merged by (backend, device, property)
    # results a later source replaced: (earlier source's label, later source's label, how many);
    # e.g. two machines that both ran the same backend on "cpu"
    replaced: list[tuple[str, str, int]] = field(default_factory=list)
    comparison: dict | None = None  # comparison.json of the last source that has one (crossbn compare)
    # side-by-side.json of the sources that have one: each later-named release against the first-named
    side_by_side: list[dict] = field(default_factory=list)


def newest_run(root: Path = Path("reports")) -> Path | None:
    """The run folder under `root` whose results.jsonl was written last."""
    runs = sorted(root.glob("*/results.jsonl"), key=lambda p: p.stat().st_mtime)
    return runs[-1].parent if runs else None


def results_file(arg: str | Path) -> Path:
    p = Path(arg)
    if p.is_dir():
        from crossbn.records.store import recover

        p = recover(p) or p / "results.jsonl"  # a killed run's folder: its part files merged first
    if not p.is_file():
        raise ReportError(f"{arg}: no results file (expected a results.jsonl, or a folder holding one)")
    return p


def _read_conventions(folder: Path) -> list[dict]:
    path = folder / CONVENTIONS_FILE
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a torn last line of a killed run
        if not isinstance(rec, dict) or not {"backend", "device", "property"} <= rec.keys():
            raise ReportError(f"{path}:{n}: not a conventions record (needs backend, device, property)")
        out.append(rec)
    return out


def load(args) -> Sources:
    """Read and merge the sources, in the order given."""
    if not args:
        raise ReportError("no results given: name one or more results.jsonl files or run folders")
    loaded = []
    for arg in args:
        try:
            path = results_file(arg)  # a killed run's part files are merged here: they are read too
            records = read(path)
        except ResultsError as e:
            raise ReportError(str(e)) from e
        for n, rec in enumerate(records, 1):
            if not isinstance(rec, dict) or not {"case_id", "backend", "device", "verdict"} <= rec.keys():
                raise ReportError(
                    f"{path}: record {n} is not a crossbn result (needs case_id, backend, device, verdict)"
                )
        loaded.append(Source(path, records, environment.read(path.parent), _read_conventions(path.parent)))
    merged: dict[tuple, dict] = {}
    owner: dict[tuple, str] = {}
    replaced: dict[tuple[str, str], int] = {}
    conventions: dict[tuple, dict] = {}
    for src in loaded:
        for rec in src.records:
            k = key(rec)
            if k in owner and owner[k] != src.label:
                pair = (owner[k], src.label)
                replaced[pair] = replaced.get(pair, 0) + 1
            merged[k], owner[k] = rec, src.label
        for rec in src.conventions:
            conventions[(rec["backend"], rec["device"], rec["property"])] = rec
    comparison, side_by_side = None, []
    for src in loaded:
        found = _json(src.path.parent / COMPARISON_FILE)
        comparison = found if isinstance(found, dict) else comparison
        found = _json(src.path.parent / SIDE_BY_SIDE_FILE)
        if isinstance(found, dict) and isinstance(found.get("comparisons"), list):
            side_by_side += [c for c in found["comparisons"] if isinstance(c, dict)]
    return Sources(
        loaded,
        [merged[k] for k in sorted(merged)],
        [conventions[k] for k in sorted(conventions)],
        [(a, b, n) for (a, b), n in replaced.items()],
        comparison,
        side_by_side,
    )


def _json(path: Path):
    """A file crossbn wrote beside the results, or None (absent, unreadable)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
