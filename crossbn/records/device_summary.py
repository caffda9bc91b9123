"""What a run found on one device, backend by backend: how many results were
judged there, their verdicts, and how the device's outputs compare with the
same backend's CPU outputs (`cross_device`: bitwise equal, within the two
error bounds, or beyond them). `tools/gpu-check` prints this for `cuda`."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from crossbn.spec.verdicts import SEVERITY

# cross_device verdicts (outputs.compare_runs, models/judge._cross_device),
# in the columns they count towards
CROSS_COLUMNS = {"bitwise": "bitwise", "agree": "within bound", "disagree": "beyond bound"}
NOT_JUDGED = ("unsupported",)


def read_results(paths: list[Path]) -> list[dict]:
    """Records of the results.jsonl files given (a run folder or the file);
    a missing file is no records (a step that never started)."""
    from crossbn.records.results import read

    records: list[dict] = []
    for p in paths:
        f = p / "results.jsonl" if p.is_dir() else p
        if f.exists():
            records.extend(read(f))
    return records


def summarize(records: list[dict], device: str) -> dict[str, dict]:
    """{backend: {"results", "judged", "verdicts": Counter, "cross": Counter,
    "reasons": Counter}} for the records on `device`. "cross" counts each
    cross_device verdict under its column name (CROSS_COLUMNS), anything else
    (the CPU run crashed, say) under its own verdict."""
    rows: dict[str, dict] = defaultdict(
        lambda: {"results": 0, "judged": 0, "verdicts": Counter(), "cross": Counter(), "reasons": Counter()}
    )
    for r in records:
        if r.get("device") != device:
            continue
        row = rows[r["backend"]]
        row["results"] += 1
        row["verdicts"][r["verdict"]] += 1
        if r["verdict"] in NOT_JUDGED:
            row["reasons"][(r.get("reason") or "").splitlines()[0] if r.get("reason") else ""] += 1
            continue
        row["judged"] += 1
        cross = r.get("cross_device")
        if cross:
            row["cross"][CROSS_COLUMNS.get(cross.get("verdict"), cross.get("verdict") or "?")] += 1
    return dict(sorted(rows.items()))


def lines(rows: dict[str, dict], device: str, suite_of: dict[str, str] | None = None) -> list[str]:
    """The table as plain text, one backend a line, then why results were not judged."""
    if not rows:
        return [f"no results on {device}"]
    verdicts = [v for v in SEVERITY if any(row["verdicts"][v] for row in rows.values())]
    cross = [
        *CROSS_COLUMNS.values(),
        *sorted({k for row in rows.values() for k in row["cross"]} - set(CROSS_COLUMNS.values())),
    ]
    w = max(len("backend"), *map(len, rows)) + 2
    against_cpu = device != "cpu"  # the CPU has no CPU result to be held against
    head = f"{'backend':{w}s}{'results':>9s}{'judged':>8s}" + "".join(f"{v:>13s}" for v in verdicts)
    if against_cpu:
        head += "  | against its CPU result: " + ", ".join(cross)
    out = [
        f"on {device}: results and verdicts"
        + (f", and each {device} result against the same backend's CPU result" if against_cpu else ""),
        head,
    ]
    for name, row in rows.items():
        line = f"{name:{w}s}{row['results']:>9d}{row['judged']:>8d}"
        line += "".join(f"{row['verdicts'][v]:>13d}" for v in verdicts)
        if against_cpu:
            line += "  | " + ", ".join(f"{row['cross'][c]} {c}" for c in cross)
        out.append(line)
    unjudged = [(name, reason, n) for name, row in rows.items() for reason, n in row["reasons"].most_common(1)]
    if unjudged:
        out.append(f"not judged on {device} (most common reason):")
        out += [f"  {name:{w}s}{n:>5d}  {reason[:160]}" for name, reason, n in unjudged]
    return out


def as_json(rows: dict[str, dict]) -> str:
    return json.dumps(
        {
            name: {
                "results": row["results"],
                "judged": row["judged"],
                "verdicts": dict(row["verdicts"]),
                "vs_cpu": dict(row["cross"]),
                "not_judged": dict(row["reasons"]),
            }
            for name, row in rows.items()
        },
        indent=1,
        sort_keys=True,
    )
