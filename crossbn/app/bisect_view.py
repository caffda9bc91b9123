"""What `crossbn bisect` shows of its answers, in the terminal and on
bisect.html: the results grouped by (last good, first bad release), what
changed there, the first bad release's notes, and the timeline of every
release run (a column per result, at most COLUMNS)."""

from __future__ import annotations

from crossbn.upgrade.bisect import Bisection

COLUMNS = 8  # results shown in the timeline (all of them are in bisect.json)


def view(args, backends: list[str], found: Bisection, run) -> dict:
    """The answers and the timeline; `run` is bisect_command's Runner (the
    environments it made, GOOD's own results, the targets by key)."""
    from crossbn.upgrade.releases import release_notes

    groups: dict[tuple, list] = {}
    for key, a in found.answers.items():
        g = (a.last_good, a.first_bad, tuple(a.untold)) if a.reproduced else (None, None, ())
        groups.setdefault(g, []).append(key)
    rows = []
    for (last_good, first_bad, untold), members in sorted(
        groups.items(), key=lambda kv: (kv[0][1] is None, str(kv[0]))
    ):
        first = members[0]
        before = found.steps.get(last_good or "", {}).get(first) or run.at_good.get(first)
        after = found.steps.get(first_bad or "", {}).get(first)
        change = ""
        if before and after:
            change = (
                f"{before.verdict} {_num(before.ratio)} at {last_good} -> {after.verdict} {_num(after.ratio)} "
                f"at {first_bad} (outputs {after.against_good} against {run.good})"
            )
        notes = None
        if first_bad and first_bad in run.pythons:
            notes = release_notes(run.pythons[first_bad], args.framework, first_bad)
        rows.append(
            {
                "last_good": last_good,
                "first_bad": first_bad,
                "untold": list(untold),
                "count": len(members),
                "names": [f"{run.by_key[k][0].pytest_id} on {k[1]}" for k in members[:3]],
                "more": max(len(members) - 3, 0),
                "change": change,
                "notes": notes,
            }
        )
    # the results that changed (those that did not: only when nothing did)
    shown = [k for k, a in found.answers.items() if a.reproduced][:COLUMNS] or list(found.answers)[:COLUMNS]
    timeline = []
    for release in found.releases:
        steps = found.steps.get(release, {})
        if release == run.good:
            steps = {**{k: s for k, s in run.at_good.items() if k in shown}, **steps}
        if steps or release in found.skipped:
            cells = [steps.get(k) for k in shown]
            timeline.append({"release": release, "skipped": release in found.skipped, "cells": cells})
    return {
        "framework": args.framework,
        "good": args.good,
        "bad": args.bad,
        "releases": found.releases,
        "backends": backends,
        "bitwise": args.bitwise,
        "sweep": args.sweep,
        "answers": found.answers,
        "groups": rows,
        "skipped": found.skipped,
        "columns": [f"{run.by_key[k][0].pytest_id} on {k[1]}" for k in shown],
        "timeline": timeline,
        "hidden": max(len(found.answers) - COLUMNS, 0),
    }


def _num(x) -> str:
    return "–" if x is None else f"{x:.3g}"


def summary(shown: dict) -> str:
    """The terminal's answer: a line per group of results, the releases that
    could not run, then the timeline (release by result)."""
    lines = []
    for g in shown["groups"]:
        names = ", ".join(g["names"]) + (f" and {g['more']} more" if g["more"] else "")
        if g["first_bad"] is None:
            lines.append(f"no change between GOOD and BAD: {g['count']} result(s) ({names})")
            continue
        where = f"first bad {shown['framework']} {g['first_bad']}, last good {g['last_good']}"
        if g["untold"]:
            where += f" (or one of {', '.join(g['untold'])}, which could not be run)"
        lines.append(f"{where}: {g['count']} result(s) ({names})")
        if g["change"]:
            lines.append(f"  {g['change']}")
        if g["notes"]:
            lines.append(f"  release notes: {g['notes']}")
    for release, why in shown["skipped"].items():
        lines.append(f"skipped {release}: {why}")
    if shown["timeline"]:
        lines.append("timeline (verdict, error/bound, outputs against GOOD's):")
        for i, c in enumerate(shown["columns"]):
            lines.append(f"  [{i + 1}] {c}")
        width = max(len(r["release"]) for r in shown["timeline"])
        for r in shown["timeline"]:
            cells = [
                f"[{i + 1}] {s.verdict} {_num(s.ratio)} {s.against_good}" if s else f"[{i + 1}] –"
                for i, s in enumerate(r["cells"])
            ]
            lines.append(f"  {r['release']:<{width}}  " + ("could not run" if r["skipped"] else "  ".join(cells)))
    return "\n".join(lines)
