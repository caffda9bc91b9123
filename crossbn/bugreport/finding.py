"""Naming a finding: `CASE--BACKEND--DEVICE`, as the report names its page.

CASE is a case id (or a unique prefix of one, at least 6 hex digits) or a
pytest id; DEVICE defaults to cpu. A finding page's file name
(`findings/<slug>.html`) is accepted as it is. The case is taken from a run's
results when one has it, otherwise from a catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class FindingError(ValueError):
    """A finding that cannot be named or found; the message says what and where."""


@dataclass
class Located:
    case: object  # the Case
    backend: str
    device: str
    record: dict | None  # the result record it came from, if a run had it
    run: Path | None  # that run's folder


def parse(spec: str) -> tuple[str, str, str]:
    """(case reference, backend, device) of `CASE--BACKEND[--DEVICE]`."""
    name = Path(spec).name
    if name.endswith(".html"):
        name = name[:-5]
    parts = name.split("--")
    if len(parts) not in (2, 3) or not all(parts):
        raise FindingError(
            f"finding {spec!r}: expected CASE--BACKEND--DEVICE (a case id or pytest id, a backend, "
            "a device), e.g. ranks-f64-16x4-cf-t3e-0a1b2c3d--keras-jax--cpu, as the report names "
            "its finding pages"
        )
    return parts[0], parts[1], parts[2] if len(parts) == 3 else "cpu"


def _matches(ref: str, case_id: str, pytest_id: str) -> bool:
    return (
        ref == pytest_id
        or (len(ref) >= 6 and case_id.startswith(ref))
        or (len(ref) >= 8 and pytest_id.endswith("-" + ref))
    )


def locate(spec: str, results: str | None = None, suite: str = "default") -> Located:
    from crossbn.records.results import read
    from crossbn.records.sources import ReportError, newest_run, results_file
    from crossbn.spec.case import Case
    from crossbn.spec.suites import load_suite

    ref, backend, device = parse(spec)
    source = results or newest_run()
    try:
        path = results_file(source) if source else None
    except ReportError as e:
        raise FindingError(str(e)) from e
    if path is not None:
        for rec in read(path):
            if (
                rec.get("backend") == backend
                and rec.get("device") == device
                and "case" in rec
                and "network" not in rec["case"]
                and _matches(ref, rec["case_id"], rec.get("pytest_id", ""))
            ):
                return Located(Case.from_dict(rec["case"]), backend, device, rec, path.parent)
    found = [c for c in load_suite(suite) if isinstance(c, Case) and _matches(ref, c.id, c.pytest_id)]
    if len(found) > 1:
        raise FindingError(
            f"finding {spec!r}: {ref!r} names {len(found)} cases of suite {suite!r}; give more of the id"
        )
    if not found:
        where = f"the results in {path} nor " if path else ""
        raise FindingError(f"finding {spec!r}: no case {ref!r} on {backend}/{device} in {where}suite {suite!r}")
    return Located(found[0], backend, device, None, None)
