"""`crossbn run --bug-reports`: one verified bug report per root cause of a run's new findings.

New: a finding no known-differences entry matched. The findings are grouped
(group.py); each group's smallest case is shrunk and written up (make.py)
into <run>/bug-reports/<slug>/, and <run>/bug-reports/index.json maps every
finding of the group to that folder, so each finding's page links the
report of its root cause.
"""

from __future__ import annotations

import json
from pathlib import Path

INDEX = "index.json"


def index(out: Path) -> dict[str, str]:
    """{finding slug: report folder name} of a run's bug reports."""
    try:
        return json.loads((out / "bug-reports" / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_all(out: Path, budget: float, *, known_file: str | None = None, backend_modules=(), say=print) -> int:
    """Write the reports; the number written."""
    from crossbn.bugreport.attempt import Lab
    from crossbn.bugreport.command import backend_spec
    from crossbn.bugreport.group import group
    from crossbn.bugreport.make import make
    from crossbn.records import known as known_mod
    from crossbn.records.naming import slug
    from crossbn.records.results import read
    from crossbn.spec.case import Case
    from crossbn.spec.verdicts import FAILING

    records = [
        r
        for r in read(out / "results.jsonl")
        if r.get("verdict") in FAILING and not r.get("known") and "network" not in (r.get("case") or {})
    ]
    groups = group(records)
    known = known_mod.load(known_file) if known_file else []
    say(
        f"crossbn run: bug reports for {len(records)} new finding(s), {len(groups)} root cause(s), "
        f"up to {budget:g} s of shrinking each"
    )
    labs: dict[tuple, Lab] = {}
    mapping = index(out)
    written = 0
    try:
        for g in groups:
            rec = g.smallest
            where = (rec["backend"], rec["device"])
            if where not in labs:
                labs[where] = Lab(backend_spec(rec, rec["backend"]), rec["device"], tuple(backend_modules))
            ratio = "" if g.worst_ratio is None else f"{g.worst_ratio:.3g}"
            made = make(
                Case.from_dict(rec["case"]),
                labs[where],
                out / "bug-reports",
                budget,
                slug=slug(rec),
                known=known,
                count=g.count,
                dtypes=", ".join(g.dtypes),
                worst=ratio,
                original_name=rec.get("pytest_id", ""),
                run=out,
            )
            say(
                f"  {g.count:4d} x {g.backend}/{g.device} {g.stage or g.kind} | {g.fingerprint or '-'}: "
                f"{made.status}" + (f" -> {made.folder}" if made.folder else f" ({made.message.splitlines()[0]})")
            )
            if made.folder is not None:
                written += 1
                mapping.update({slug(r): made.folder.name for r in g.records})
    finally:
        for lab in labs.values():
            lab.close()
    if mapping:
        (out / "bug-reports").mkdir(parents=True, exist_ok=True)
        (out / "bug-reports" / INDEX).write_text(json.dumps(mapping, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return written
