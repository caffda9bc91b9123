"""The report's pages as plain data: what each template shows, computed here
so that the templates only lay it out (and so it can be tested without HTML).

Every result is placed and ranked by the ratio its verdict rests on
(results.judged): a correct backend's ratios all sit at or below 1.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from crossbn.records.naming import rerun_command, slug, suite_name  # noqa: F401 (the pages use them)
from crossbn.records.results import judged, number, observable_ratio, ratio_rank
from crossbn.report import diagrams, svg
from crossbn.spec.verdicts import FAILING, SEVERITY, Verdict
from crossbn.verdict.localize import STAGES

# observable -> the dataflow stage whose value it is (y is the affine output)
OBSERVABLE_STAGE = {
    "batch_mean": "batch mean",
    "batch_var": "batch variance",
    "invstd": "inverse std",
    "y": "affine output",
    "running_mean": "running mean",
    "running_var": "running variance",
    "dbeta": "dbeta",
    "dgamma": "dgamma",
    "dx": "dx",
}
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
    """What `crossbn bugs` and a known-differences entry group by (backend,
    verdict, dtype, stage, fingerprint), and the device."""
    from crossbn.records.known import group_key

    return (*group_key(rec), rec["device"])


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


def members(group: list[dict], out: Path) -> list[dict]:
    """The member table of a group's page (every member, the page's own first)."""
    rows = []
    for rec in group:
        line = finding_line(rec)
        diag, source = rec.get("diagnosis") or {}, (rec.get("diagnosis") or {}).get("source") or {}
        how = (
            "its own search"
            if source.get("how") == "own"
            else f"confirmed against {source.get('representative_test')}"
            if source.get("how") == "confirmed"
            else ""
        )
        own = rec is group[0] or adds_to_its_group(rec, out)
        rows.append(
            {
                **line,
                "anchor": f"member-{slug(rec)}",
                "page": f"{slug(rec)}.html" if own else None,
                "diagnosed": how,
                "score": diag.get("score"),
                "max_ulp": ((rec.get("observables") or {}).get(line["observable"] or "") or {}).get("max_ulp"),
            }
        )
    return rows


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


def finding_line(rec: dict) -> dict:
    loc = rec.get("localization") or {}
    diag = rec.get("diagnosis") or {}
    if diag:
        fingerprint = diag.get("formulation", "")
        fingerprint += "" if diag.get("explains") else " (does not explain it)"
    else:
        fingerprint = ""
    ratio, observable = judged(rec)
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
    lines = [
        {**finding_line(g[0]), "members": len(g), "known_members": sum(1 for r in g if r.get("known"))}
        for g in root_cause_groups(records)
    ]
    lines += [
        {**finding_line(r), "members": 1, "known_members": int(bool(r.get("known")))}
        for r in records
        if is_finding(r) and is_network(r)
    ]
    return sorted(lines, key=_rank_key)


def distribution(records) -> list[tuple[str, list[float]]]:
    per: dict[str, list[float]] = defaultdict(list)
    for r in records:
        ratio = judged_ratio(r)
        if ratio is not None:
            per[backend_row(r)].append(ratio)
    return [(name, per[name]) for name in sorted(per)]


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


def index(sources) -> dict:
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
        "n_findings": n_findings,
        "known_split": {"known": known, "new": n_findings - known} if known else None,
        "distribution": svg.ratio_distribution(distribution(records)),
    }


# ---- a finding's page ---------------------------------------------------------------------


def stage_verdicts(rec: dict) -> dict[str, str]:
    """Each dataflow stage's verdict at the step where the result departs."""
    loc = rec.get("localization") or {}
    obs = rec.get("observables") or {}
    step = loc.get("step") or ((rec.get("worst") or {}).get("observable") or ".").split(".")[0]
    out = {s: "" for s in STAGES}
    for name, o in obs.items():
        s, _, what = name.partition(".")
        if s == step and what in OBSERVABLE_STAGE:
            out[OBSERVABLE_STAGE[what]] = o.get("verdict", "")
    return out


def channel_series(rec: dict) -> list[tuple[str, list]]:
    """Per-channel ratios of the observables that fail (deviation,
    nan-mismatch), worst first, the one the verdict rests on always among
    them; of the convention differences when none fails. The ratios are
    canonical: against a declared convention only the observable's largest
    ratio is kept."""
    obs = rec.get("observables") or {}
    with_channels = {n: o for n, o in obs.items() if o.get("per_channel")}
    off = [n for n, o in with_channels.items() if o.get("verdict") in ("deviation", "nan-mismatch")] or [
        n for n, o in with_channels.items() if o.get("verdict") == Verdict.CONVENTION
    ]
    off.sort(key=lambda n: -ratio_rank(observable_ratio(obs[n])))
    return [(n, [number(v) for v in with_channels[n]["per_channel"]]) for n in off[:6]]


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


def finding(rec: dict, run: dict | None, out: Path, group: list[dict] | None = None) -> dict:
    """A finding's page; the page of its root-cause group when `group` (whose
    first member is `rec`) has other members: then with the member table."""
    loc = rec.get("localization") or {}
    stage = loc.get("stage")
    highlighted = {stage} if stage else set()
    series = channel_series(rec)
    return {
        "rec": rec,
        "line": finding_line(rec),
        "command": rerun_command(rec, run),
        "case_fields": list((rec.get("case") or {}).items()),
        "inputs": rec.get("inputs") or {},
        "observables": [
            {"name": n, **o, "ratio": number(o.get("ratio"))} for n, o in (rec.get("observables") or {}).items()
        ],
        "localization": loc,
        "diagnosis": rec.get("diagnosis"),
        "dataflow": diagrams.dataflow(stage_verdicts(rec), highlighted=highlighted),
        "channels": svg.channel_errors(series) if series else None,
        "bug_reports": bug_reports(rec, out),
        "members": members(group, out) if group and len(group) > 1 else None,
    }


# ---- a network's page (models suite) ------------------------------------------------------


def network(rec: dict, run: dict | None, out: Path) -> dict:
    from crossbn.spec.networks import INPUT, NETWORKS

    spec = NETWORKS.get((rec.get("case") or {}).get("network", ""))
    steps = []
    for step, layers in (rec.get("layers") or {}).items():
        order = list(spec.names) if spec else list(layers)
        drawn = []
        for name in order:
            # the numbers the verdict rests on: against the oracle under the
            # backend's declared conventions, where it declares any
            e = {**layers.get(name, {}), **(layers.get(name, {}).get("convention") or {})}
            layer = spec.layer(name) if spec else None
            drawn.append(
                {
                    "name": name,
                    "op": layer.op if layer else "?",
                    "inputs": list(layer.inputs) if layer else [INPUT],
                    "delta": _maybe(e.get("delta")),
                    "R": _maybe(e.get("R")),
                    "R_threshold": _maybe(e.get("R_threshold")),
                    "introduces": bool(e.get("introduces")),
                }
            )
        introducing = {d["name"] for d in drawn if d["introduces"]}
        steps.append(
            {
                "step": step,
                "graph": diagrams.network_graph(drawn, highlighted=introducing),
                "layers": [
                    {
                        **layers.get(d["name"], {}),
                        **(layers.get(d["name"], {}).get("convention") or {}),
                        "name": d["name"],
                        "op": d["op"],
                    }
                    for d in drawn
                ],
                "introducing": sorted(introducing, key=order.index),
            }
        )
    conventions = any("convention" in e for layers in (rec.get("layers") or {}).values() for e in layers.values())
    return {
        "rec": rec,
        "line": finding_line(rec),
        "command": rerun_command(rec, run),
        "case_fields": list((rec.get("case") or {}).items()),
        "against_conventions": conventions,
        "description": spec.description if spec else "",
        "steps": steps,
        "localization": rec.get("localization") or {},
        "bug_reports": bug_reports(rec, out),
    }


def _maybe(x):
    return None if x is None else number(x)
