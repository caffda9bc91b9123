"""Naming a finding in any form crossbn prints it, and finding its case.

Accepted: `CASE--BACKEND--DEVICE` (the report's page name; DEVICE defaults
to cpu), a finding page's file (`findings/<name>.html`), a pytest id
(`CASE-BACKEND-DEVICE`, alone or as the node id `...::test_batchnorm[...]`),
or a bare CASE (what `crossbn bugs` lists as a group's smallest case) when
the run has one finding of it. CASE is a case id, a unique prefix of one (at
least 6 hex digits), or a pytest id. The case is taken from a run's results
when one has it, otherwise from a catalogue (every built-in suite unless one
is named).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# a pytest id: the case's pytest id (which ends in 8 hex digits of its id), the backend, the device
_PYTEST_ID = re.compile(r"(?P<case>.+-[0-9a-f]{8})-(?P<backend>.+)-(?P<device>cpu|cuda)")


class FindingError(ValueError):
    """A finding that cannot be named or found; the message says what and where."""


@dataclass
class Located:
    case: object  # the Case
    backend: str
    device: str
    record: dict | None  # the result record it came from, if a run had it
    run: Path | None  # that run's folder


def parse(spec: str) -> tuple[str, str | None, str | None]:
    """(case reference, backend or None, device or None) of any accepted form."""
    name = spec.strip()
    node = re.search(r"\[([^\[\]]+)\]$", name)
    if node:  # a pytest node id: its parameter id
        name = node.group(1)
    name = Path(name).name
    if name.endswith(".html"):
        name = name[:-5]
    if "--" in name:
        parts = name.split("--")
        if len(parts) not in (2, 3) or not all(parts):
            raise FindingError(
                f"finding {spec!r}: expected CASE--BACKEND--DEVICE (a case id or pytest id, a backend, "
                "a device), e.g. ranks-f64-16x4-cf-t3e-0a1b2c3d--keras-jax--cpu, as the report names "
                "its finding pages"
            )
        return parts[0], parts[1], parts[2] if len(parts) == 3 else None
    match = _PYTEST_ID.fullmatch(name)
    if match:
        return match["case"], match["backend"], match["device"]
    if not name:
        raise FindingError("finding '': name one, e.g. smoke-f64-16x4-cf-t2e-f62bae26--keras-jax--cpu")
    return name, None, None


def _matches(ref: str, case_id: str, pytest_id: str) -> bool:
    return (
        ref == pytest_id
        or (len(ref) >= 6 and case_id.startswith(ref))
        or (len(ref) >= 8 and pytest_id.endswith("-" + ref))
    )


def _same_backend(given: str | None, backend: str) -> bool:
    """A page name spells a backend file-safe (records/naming.slug): `torch@2.5` as `torch_2.5`."""
    return given is None or given in (backend, re.sub(r"[^A-Za-z0-9._-]+", "_", backend))


def _named(rec: dict) -> str:
    return f"{rec.get('pytest_id') or rec['case_id']}--{rec['backend']}--{rec['device']}"


def locate(spec: str, results: str | None = None, suite: str | None = None) -> Located:
    """The finding `spec` names: from `results` (a run folder or results file;
    by default the newest run under reports/), else from `suite` (by default
    every built-in suite)."""
    from crossbn.records.results import read
    from crossbn.records.sources import ReportError, newest_run, results_file
    from crossbn.spec.case import Case
    from crossbn.spec.verdicts import FAILING

    ref, backend, device = parse(spec)
    source = results or newest_run()
    try:
        path = results_file(source) if source else None
    except ReportError as e:
        raise FindingError(str(e)) from e
    if path is not None:
        found = [
            rec
            for rec in read(path)
            if "case" in rec
            and "network" not in rec["case"]
            and _same_backend(backend, rec.get("backend", ""))
            and (device is None or rec.get("device") == device)
            and _matches(ref, rec["case_id"], rec.get("pytest_id", ""))
        ]
        if device is None and backend is not None:
            found = [r for r in found if r["device"] == "cpu"] or found
        found = [r for r in found if r.get("verdict") in FAILING] or found
        if len(found) > 1:
            raise FindingError(
                f"finding {spec!r}: {len(found)} results of {path} match; name one: "
                + ", ".join(_named(r) for r in found[:6])
                + (" ..." if len(found) > 6 else "")
            )
        if found:
            rec = found[0]
            return Located(Case.from_dict(rec["case"]), rec["backend"], rec["device"], rec, path.parent)
    where = f"the results in {path}" if path else ""
    if backend is None:
        raise FindingError(
            f"finding {spec!r}: no result of case {ref!r} in {where or 'any run (none under reports/)'}; "
            "name the run (--results RUN) or the backend too, as CASE--BACKEND--DEVICE"
        )
    return _from_suite(spec, ref, backend, device or "cpu", suite, where)


def _from_suite(spec: str, ref: str, backend: str, device: str, suite: str | None, where: str) -> Located:
    from crossbn.spec.case import Case
    from crossbn.spec.catalogue import CatalogueError, available_suites
    from crossbn.spec.suites import load_suite

    names = [suite] if suite else available_suites()
    found: dict[str, Case] = {}
    for name in names:
        try:
            cases = load_suite(name)
        except CatalogueError:
            if suite:
                raise
            continue  # a built-in folder with nothing in it yet (found/)
        found.update({c.id: c for c in cases if isinstance(c, Case) and _matches(ref, c.id, c.pytest_id)})
    label = f"suite {suite!r}" if suite else f"the built-in suites ({', '.join(names)})"
    if len(found) > 1:
        raise FindingError(f"finding {spec!r}: {ref!r} names {len(found)} cases of {label}; give more of the id")
    if not found:
        hint = "" if where else " (no run under reports/: --results RUN names the run it is from)"
        raise FindingError(
            f"finding {spec!r}: no case {ref!r} on {backend}/{device} in {where + ' nor ' if where else ''}{label}{hint}"
        )
    return Located(next(iter(found.values())), backend, device, None, None)
