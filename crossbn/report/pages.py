"""The report's index as plain data, and what every page shares: a finding's
line, its root-cause group, where its page is, its bug report. Computed here
so that the templates only lay it out (and so it can be tested without HTML);
finding_page.py does a finding's and a network's page, pairs.py the
backend-against-backend view.

Every result is placed and ranked by the ratio its verdict rests on
(results.judged): a correct backend's ratios all sit at or below 1.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from crossbn.records.naming import slug, suite_name
from crossbn.records.results import judged, ratio_rank
from crossbn.report import fingerprints, svg
from crossbn.spec.verdicts import FAILING, SEVERITY

FINDINGS_DIR = "findings"
BUG_REPORTS_DIR = "bug-reports"  # <report>/bug-reports/<page slug>/{ISSUE.md,repro.py} (crossbn repro)


def judged_ratio(rec: dict) -> float | None:
    return judged(rec)[0]


def is_finding(rec: dict) -> bool:
    return rec["verdict"] in FAILING


def is_network(rec: dict) -> bool:
    """A models-suite result (its case names a network), whatever its verdict."""
    return "network" in (rec.get("case") or {})


def page_href(rec: dict) -> str:
    return f"{FINDINGS_DIR}/{slug(rec)}.html"


# ---- root-cause groups: one page each -------------------------------------------------------


def root_cause_key(rec: dict) -> tuple:
    """What `crossbn bugs` groups by (crossbn/bugreport/group.py: backend,
    device, and the root cause; the stage where no formulation explains it)."""
    from crossbn.bugreport.group import key

    return key(rec)


def root_cause_groups(records) -> list[list[dict]]:
    """The findings (not network results: those keep a page each), grouped by
    root cause, each group worst first, the groups in the order of their
    worst member."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for rec in records:
        if is_finding(rec) and not is_network(rec):
            groups[root_cause_key(rec)].append(rec)
    ranked = [sorted(g, key=lambda r: _rank_key(finding_line(r))) for g in groups.values()]
    return sorted(ranked, key=lambda g: _rank_key(finding_line(g[0])))


def adds_to_its_group(rec: dict, out: Path) -> bool:
    """A member gets a page of its own only for what its group's page does
    not show: a comparison with another device or release, a bug report."""
    return bool(rec.get("cross_device") or rec.get("cross_version") or bug_reports(rec, out))


def result_key(rec: dict) -> tuple[str, str, str]:
    return (rec["case_id"], rec["backend"], rec["device"])


def finding_links(records, out: Path) -> dict[tuple[str, str, str], str]:
    """Where each finding is shown, from the report's folder: its own page,
    or its row of its group's page (keyed by `result_key`)."""
    links = {}
    for group in root_cause_groups(records):
        for rec in group:
            own = rec is group[0] or adds_to_its_group(rec, out)
            links[result_key(rec)] = page_href(rec) if own else f"{page_href(group[0])}#member-{slug(rec)}"
    for rec in records:
        if is_finding(rec) and is_network(rec):
            links[result_key(rec)] = page_href(rec)
    return links


def backend_row(rec: dict) -> str:
    return f"{rec['backend']}/{rec['device']}"


# ---- the index ------------------------------------------------------------------------------


def verdict_counts(records) -> dict[str, int]:
    c = Counter(r["verdict"] for r in records)
    return {v: c[v] for v in SEVERITY if c[v]} | {v: n for v, n in c.items() if v not in SEVERITY}


def worst_verdict(counts: dict[str, int]) -> str:
    known = [v for v in counts if v in SEVERITY]
    return max(known, key=SEVERITY.index) if known else "match"


def matrix(records) -> dict:
    """Backends (rows, "backend/device") x case groups (columns): verdict counts per cell."""
    groups = sorted({r.get("group") or "(none)" for r in records})
    cells: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    versions: dict[str, str] = {}
    for r in records:
        row = backend_row(r)
        cells[row][r.get("group") or "(none)"].append(r)
        versions[row] = r.get("version") or versions.get(row, "")
    rows = []
    for row in sorted(cells):
        out = []
        for g in groups:
            counts = verdict_counts(cells[row][g])
            out.append({"group": g, "counts": counts, "worst": worst_verdict(counts) if counts else ""})
        counts = verdict_counts([r for rs in cells[row].values() for r in rs])
        rows.append({"name": row, "version": versions[row], "cells": out, "total": counts})
    return {"groups": groups, "rows": rows}


def rivals_by_result(records) -> dict[tuple[str, str, str], list[str]]:
    """Each diagnosed result's rivals (fingerprints.rivals), keyed by
    result_key. A diagnosis confirmed against its root cause's representative
    holds only the one formulation it confirmed: it takes the
    representative's rivals, whose search it shares."""
    by = {result_key(r): r for r in records}
    out = {}
    for rec in records:
        diag = rec.get("diagnosis") or {}
        source = diag.get("source") or {}
        if source.get("how") == "confirmed":
            rep = (by.get((source.get("representative"), rec["backend"], rec["device"])) or {}).get("diagnosis")
            if rep and rep.get("formulation") == diag.get("formulation"):
                diag = rep
        if diag:
            out[result_key(rec)] = fingerprints.rivals(diag)
    return out


def finding_line(rec: dict, rivals: list[str] | None = None) -> dict:
    """A finding as one row of a table; `rivals` (rivals_by_result): the
    formulations as good as its fingerprint, when known beyond its own record."""
    loc = rec.get("localization") or {}
    diag = rec.get("diagnosis") or {}
    label = diag.get("formulation", "") if diag else ""
    fingerprint = label + ("" if not diag or diag.get("explains") else " (does not explain it)")
    ratio, observable = judged(rec)
    rivals = fingerprints.rivals(diag) if rivals is None else rivals
    return {
        "verdict": rec["verdict"],
        "ratio": ratio,
        "case": rec.get("pytest_id") or rec["case_id"],
        "case_id": rec["case_id"],
        "backend": rec["backend"],
        "device": rec["device"],
        # the sort key of the ratio column (no ratio: first, as the worst)
        "sort_key": "1e308" if ratio is None or ratio != ratio or ratio > 1e308 else repr(ratio),
        "observable": observable,
        "stage": loc.get("stage") or "",
        "fingerprint": fingerprint,
        "fingerprint_label": label,
        # its parts in words, and the formulations that explain the output as well (fingerprints.py)
        "fingerprint_parts": fingerprints.parts(label),
        "explains": bool(diag.get("explains")),
        "rivals": rivals,
        "settled": fingerprints.settled(label, rivals),
        "confidence": fingerprints.confidence(diag, rivals),
        "reason": (rec.get("reason") or "").splitlines()[0:1],
        "known": rec.get("known"),
        "href": page_href(rec),
    }


def _rank_key(line: dict):
    r = line["ratio"]
    # crashes, timeouts and errors have no ratio: they rank first, as the worst; then NaN, inf, the rest
    return (r is not None, -ratio_rank(r) if r is not None else 0.0, line["case"], line["backend"], line["device"])


def findings(records) -> list[dict]:
    return sorted((finding_line(r) for r in records if is_finding(r)), key=_rank_key)


def group_lines(records) -> list[dict]:
    """The index's findings table: a row per root-cause group (its worst
    member, and how many it has), and one per network result."""
    rivals = rivals_by_result(records)
    lines = [
        {
            **finding_line(g[0], rivals.get(result_key(g[0]))),
            "members": len(g),
            "known_members": sum(1 for r in g if r.get("known")),
        }
        for g in root_cause_groups(records)
    ]
    lines += [
        {**finding_line(r), "members": 1, "known_members": int(bool(r.get("known")))}
        for r in records
        if is_finding(r) and is_network(r)
    ]
    return sorted(lines, key=_rank_key)


def distribution(records, links: dict | None = None) -> list[tuple[str, list[float], list]]:
    """Per backend row: the ratios, and for each a link to where it is shown
    when it is a finding ((href, tooltip); None for a result with no page)."""
    per: dict[str, list[float]] = defaultdict(list)
    to: dict[str, list] = defaultdict(list)
    for r in records:
        ratio = judged_ratio(r)
        if ratio is not None:
            per[backend_row(r)].append(ratio)
            href = (links or {}).get(result_key(r))
            tip = f"{r.get('pytest_id') or r['case_id']}: {r['verdict']}, error/bound {ratio:.3g}"
            to[backend_row(r)].append((href, tip) if href else None)
    return [(name, per[name], to[name]) for name in sorted(per)]


def linked_comparisons(comparisons: list[dict], links: dict) -> list[dict]:
    """Comparisons (comparison.json, side-by-side.json) with each row's
    finding link: the later side's finding, else the earlier side's."""
    out = []
    for c in comparisons:
        rows = []
        for r in c.get("rows") or []:
            href = None
            for side in (r.get("new"), r.get("base")):
                if isinstance(side, dict) and href is None:
                    href = links.get((side.get("case_id"), side.get("backend"), side.get("device")))
            rows.append({**r, "href": href})
        out.append({**c, "rows": rows})
    return out


def conventions_table(conventions: list[dict]) -> dict | None:
    if not conventions:
        return None
    from crossbn.conventions.infer import PROPERTIES

    rows: dict[tuple, dict] = defaultdict(dict)
    for c in conventions:
        rows[(c["backend"], c["device"])][c["property"]] = c
    props = [(k, header, what) for k, (header, what, _) in PROPERTIES.items()]
    return {
        "properties": props,
        "rows": [
            {"name": f"{b}/{d}", "cells": [cells.get(k) for k, _, _ in props]} for (b, d), cells in sorted(rows.items())
        ],
        "findings": sum(1 for c in conventions if c.get("finding")),
    }


def environment(sources) -> list[dict]:
    """One entry per source: its run.json (or None) and the backends its records ran."""
    out = []
    for src in sources.sources:
        backends = {}
        for r in src.records:
            if r.get("version") or backend_row(r) not in backends:
                backends[backend_row(r)] = {
                    "name": backend_row(r),
                    "version": r.get("version") or "",
                    "device_name": r.get("device_name") or "",
                    "interpreter": r.get("interpreter") or "",
                }
        # a folder's name, never an absolute path: the report may be moved or attached
        run = dict(src.run, suite=suite_name(str(src.run.get("suite", "")))) if src.run else None
        out.append(
            {
                "label": src.label,
                "run": run,
                "records": len(src.records),
                "backends": sorted(backends.values(), key=lambda b: b["name"]),
            }
        )
    return out


def index(sources, links: dict | None = None, pair_view: dict | None = None) -> dict:
    """The index: `links` from finding_links, `pair_view` the backend-against-backend section."""
    records = sources.records
    lines = group_lines(records)
    known = sum(line["known_members"] for line in lines)
    n_findings = sum(line["members"] for line in lines)
    return {
        "totals": verdict_counts(records),
        "n_records": len(records),
        "environments": environment(sources),
        "incomplete": [e["label"] for e in environment(sources) if e["run"] and not e["run"].get("complete")],
        "replaced": sources.replaced,
        "comparison": sources.comparison,
        "side_by_side": sources.side_by_side,
        "matrix": matrix(records),
        "conventions": conventions_table(sources.conventions),
        "findings": lines,
        "fingerprint_legend": fingerprints.legend(line["fingerprint_label"] for line in lines),
        "n_findings": n_findings,
        "known_split": {"known": known, "new": n_findings - known} if known else None,
        "distribution": svg.ratio_distribution(distribution(records, links)),
        "pairs": pair_view,
    }


def bug_reports(rec: dict, out: Path) -> list[dict]:
    """The files of the bug report written for this finding, or for its root
    cause (`crossbn run --bug-reports` indexes a group's findings)."""
    name = slug(rec)
    if not (out / BUG_REPORTS_DIR / name).is_dir():
        from crossbn.bugreport.batch import index

        name = index(out).get(name, "")
    folder = out / BUG_REPORTS_DIR / name
    if not name or not folder.is_dir():
        return []
    return [
        {"name": p.name, "href": f"../{BUG_REPORTS_DIR}/{name}/{p.name}"}
        for p in sorted(folder.iterdir())
        if p.is_file()
    ]
