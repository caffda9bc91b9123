"""Backend against backend: how two backends' outputs agree, from the records.

Both are judged against the same oracle on the same (case, device), so the
records bound their mutual difference without rerunning anything. With r_a
and r_b an observable's canonical error/bound ratios (the largest over its
elements; the bound is the case's, the same for both), the triangle
inequality through the oracle gives, in the side-by-side unit
|a − b| / (2 × bound): at most (r_a + r_b)/2, and at least |r_a − r_b|/2
(at the worse one's worst element); in absolute terms at most the sum of
their largest errors. Equal output digests make it exactly 0. `PairError`
names a bad --pair.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict

from crossbn.records.results import number
from crossbn.records.sources import ReportError
from crossbn.report.pages import result_key

PAIRS_DIR = "pairs"
# a pair's state for one (case, device), in the order the pair page lists them
STATES = {
    "identical": "bit-identical outputs",
    "both pass": "both within the bound of the oracle",
    "alike": "both depart the same way (verdict, first departing stage, fingerprint)",
    "a departs": "{a} departs from the oracle, {b} does not",
    "b departs": "{b} departs from the oracle, {a} does not",
    "differently": "both depart, differently",
    "not compared": "one of them computed nothing to compare",
}
AGREE = ("identical", "both pass", "alike")
# rows a pair's page lists per state at most (the widest bound first): with every pair of many
# backends on a default run, listing all would make the report several times its size
ROWS_PER_STATE = 25


class PairError(ReportError):
    """A --pair that cannot be shown; the message names it."""


def parse(values, backends) -> list[tuple[str, str]]:
    """--pair values ("A,B", repeatable) checked against the backends the
    records hold; each pair once, in the order given."""
    known = sorted(set(backends))
    out: list[tuple[str, str]] = []
    for value in values or ():
        names = [n.strip() for n in str(value).split(",")]
        if len(names) != 2 or not all(names):
            raise PairError(f"--pair {value!r}: give two backend names separated by a comma, e.g. torch,keras-jax")
        a, b = names
        if a == b:
            raise PairError(f"--pair {value!r}: a backend against itself; name two different backends")
        missing = [n for n in names if n not in known]
        if missing:
            raise PairError(
                f"--pair {value!r}: no results of {' or '.join(missing)} here (backends: {', '.join(known)})"
            )
        if (a, b) not in out and (b, a) not in out:
            out.append((a, b))
    return out


def all_pairs(backends) -> list[tuple[str, str]]:
    names = sorted(set(backends))
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]


def page_name(a: str, b: str) -> str:
    """pairs/A--vs--B.html, safe on every file system (long names cut, with a
    hash of the whole so that two never collide)."""
    raw = f"{a}--vs--{b}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", raw)
    if len(safe) > 180:
        safe = f"{safe[:160]}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"
    return f"{PAIRS_DIR}/{safe}.html"


def _over(o: dict) -> bool:
    r = number(o.get("ratio"))
    return not r <= 1.0  # NaN: over


def _story(rec: dict) -> tuple:
    return (
        rec["verdict"],
        (rec.get("localization") or {}).get("stage") or "",
        (rec.get("diagnosis") or {}).get("formulation") or "",
    )


def _difference(oa: dict, ob: dict, identical: bool) -> dict:
    """One observable's mutual difference as the records bound it."""
    if identical:
        return {"low": 0.0, "high": 0.0, "abs_high": 0.0, "exact": True}
    ra, rb = number(oa.get("ratio")), number(ob.get("ratio"))
    ea, eb = number(oa.get("max_abs")), number(ob.get("max_abs"))
    same_bound = oa.get("dtype") == ob.get("dtype")  # the same case and dtype: the same bound per element
    finite = ra == ra and rb == rb and abs(ra) != float("inf") and abs(rb) != float("inf")
    return {
        "low": abs(ra - rb) / 2 if finite and same_bound else None,
        "high": (ra + rb) / 2 if finite and same_bound else None,
        "abs_high": ea + eb if ea == ea and eb == eb else None,
        "exact": False,
    }


def compare(ra: dict, rb: dict) -> dict:
    """One (case, device) on both backends: its state and the worst observable's bounds."""
    oa, ob = ra.get("observables") or {}, rb.get("observables") or {}
    common = [n for n in oa if n in ob]
    row = {"a": ra, "b": rb, "observable": "", "low": None, "high": None, "abs_high": None, "exact": False}
    if not common:  # "one_sided": one of them did compute outputs (the other crashed, say)
        return {**row, "state": "not compared", "convention": False, "one_sided": bool(oa) != bool(ob)}
    da, db = ra.get("digests") or {}, rb.get("digests") or {}
    identical = all(bool(da.get(n)) and da.get(n) == db.get(n) for n in common)
    diffs = {n: _difference(oa[n], ob[n], identical) for n in common}
    over_a = {n for n in common if _over(oa[n])}
    over_b = {n for n in common if _over(ob[n])}
    # the row shows the observable that decides its state (one that departs), the widest bound first
    shown = [n for n in common if n in over_a | over_b] or common
    worst = max(
        shown, key=lambda n: (diffs[n]["high"] is not None, diffs[n]["high"] or 0.0, diffs[n]["abs_high"] or 0.0)
    )
    row.update(observable=worst, **diffs[worst])
    if identical:
        state = "identical"
    elif not over_a and not over_b:
        state = "both pass"
    elif over_a and not over_b:
        state = "a departs"
    elif over_b and not over_a:
        state = "b departs"
    elif over_a == over_b and _story(ra) == _story(rb):
        state = "alike"
    else:
        state = "differently"
    departing = (oa, over_a) if state == "a departs" else (ob, over_b) if state == "b departs" else None
    # the departing one is within its own documented semantics: a convention difference
    convention = bool(departing) and all(departing[0][n].get("verdict") == "convention" for n in departing[1])
    return {**row, "state": state, "convention": convention, "one_sided": False}


def by_backend(records) -> dict[str, dict[tuple[str, str], dict]]:
    """backend -> (case id, device) -> record: indexed once for every pair."""
    out: dict[str, dict] = defaultdict(dict)
    for rec in records:
        out[rec["backend"]][(rec["case_id"], rec["device"])] = rec
    return out


def pair(records, a: str, b: str, links: dict, indexed: dict | None = None) -> dict:
    """Backends `a` and `b` on every (case, device) both ran: a row each,
    the counts per state and the share that agree. `indexed`: by_backend's
    (computed here when not given). The page's rows are at most
    ROWS_PER_STATE per state, the widest bound first; the counts are whole."""
    mine = indexed if indexed is not None else by_backend(records)
    mine = {a: mine.get(a, {}), b: mine.get(b, {})}
    rows = []
    for key in sorted(set(mine[a]) & set(mine[b])):
        ra, rb = mine[a][key], mine[b][key]
        row = compare(ra, rb)
        row.update(
            case=ra.get("pytest_id") or ra["case_id"],
            device=key[1],
            href_a=links.get(result_key(ra)),
            href_b=links.get(result_key(rb)),
        )
        rows.append(row)
    counts = Counter(r["state"] for r in rows)
    compared = len(rows) - counts["not compared"]
    agree = sum(counts[s] for s in AGREE)
    order = list(STATES)
    rows.sort(
        key=lambda r: (order.index(r["state"]), -(r["high"] if r["high"] is not None else float("inf")), r["case"])
    )
    # listed: the rows that are not simply in agreement (nor computed by neither), a few per state
    listed: list[dict] = []
    left_out: Counter = Counter()
    for r in rows:
        if r["state"] in ("identical", "both pass") or (r["state"] == "not compared" and not r["one_sided"]):
            continue
        if sum(1 for x in listed if x["state"] == r["state"]) < ROWS_PER_STATE:
            listed.append(r)
        else:
            left_out[r["state"]] += 1
    return {
        "a": a,
        "b": b,
        "href": page_name(a, b),
        "states": {s: words.format(a=a, b=b) for s, words in STATES.items()},
        "counts": {s: counts[s] for s in STATES if counts[s]},
        "common": len(rows),
        "compared": compared,
        "agree": agree,
        "share": agree / compared if compared else None,
        "rows": listed,
        "left_out": dict(left_out),
    }


def matrix(backends, summaries: dict) -> dict:
    """Backends x backends: each pair's share of agreeing cases, linking to its page."""
    names = sorted(set(backends))
    return {
        "names": names,
        "rows": [
            {"name": x, "cells": [summaries.get((x, y)) or summaries.get((y, x)) if x != y else None for y in names]}
            for x in names
        ],
    }
