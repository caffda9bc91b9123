"""A finding's page and a network's page (models suite) as plain data: what
finding.html.j2 and network.html.j2 lay out. pages.py holds what they share
with the index (a finding's line, its root-cause group, its bug report)."""

from __future__ import annotations

from pathlib import Path

from crossbn.records.naming import repro_command, rerun_command, slug
from crossbn.records.results import number, observable_ratio, ratio_rank
from crossbn.report import diagrams, svg
from crossbn.report.pages import adds_to_its_group, bug_reports, finding_line
from crossbn.spec.verdicts import Verdict
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


def finding(
    rec: dict,
    run: dict | None,
    out: Path,
    group: list[dict] | None = None,
    results: str | None = None,
    rivals: list[str] | None = None,
) -> dict:
    """A finding's page; the page of its root-cause group when `group` (whose
    first member is `rec`) has other members: then with the member table.
    `results`: the report's folder as the user would type it, for the
    `crossbn repro` line; `rivals`: pages.rivals_by_result's for it."""
    loc = rec.get("localization") or {}
    stage = loc.get("stage")
    highlighted = {stage} if stage else set()
    series = channel_series(rec)
    return {
        "rec": rec,
        "line": finding_line(rec, rivals),
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
        "repro": repro_command(rec, results, run),
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
