"""The goals against the measured figures: one row per goal, with the
target, what was measured and whether it holds. Computed from the raw
figures (the --json file), so an older run's goals can be read again:

    python -m benchmarks.goals benchmarks/results/<date>.json

A goal whose section was not run reads "not measured".
"""

from __future__ import annotations

import json
import sys

OVERHEAD = 1.25  # crossbn's wall within 1.25x of the bare loop's, all backends together
SPEEDUP = 1.7  # -n 2 at least 1.7x faster than -n 1
ORACLE_SHARE = 0.15  # the oracle under 15% of the whole suite's time
# "peak memory bounded by the largest case, not by the suite", read as: the
# largest harness process (controller, xdist workers) over the whole suite
# holds at most this much more than in the same run of the suite's largest
# cases alone (suite.largest_alone)
MEMORY = 1.25
RERUN = 0.5  # a second run on unchanged releases within half the first's wall
DIAGNOSIS_SHARE = 0.10  # localization and fingerprinting within 10% of the run
REPORT_MB = 30.0  # the default suite's report (index and pages)
FIRST_PAINT = 1.0  # seconds to the index's first paint in Chromium


def _median(x) -> float:
    return x["median"] if isinstance(x, dict) else x.median


def rows(raw: dict) -> list[tuple[str, str, str, str]]:
    out = []
    ov = raw.get("overhead")
    if ov:
        r = _median(ov["total"]["ratio"])
        out.append(
            ("harness overhead, all backends", f"<= {OVERHEAD}x the bare loop", f"{r:.2f}x", _met(r <= OVERHEAD))
        )
    else:
        out.append(("harness overhead, all backends", f"<= {OVERHEAD}x the bare loop", "not measured", ""))
    sc = raw.get("scaling")
    walls = {str(k): v for k, v in sc["walls"].items()} if sc and "walls" in sc else {}
    if ov and "1" in walls:
        # the arrangement of a real run: one pytest session, every backend in
        # it one after another (-n 1), against the same bare loops in series
        r = _median(walls["1"]) / _median(ov["total"]["bare"])
        out.append(
            (
                "harness overhead, all backends in one run (-n 1)",
                f"<= {OVERHEAD}x the bare loop",
                f"{r:.2f}x",
                _met(r <= OVERHEAD),
            )
        )
    speed = {str(k): v for k, v in sc["speedup"].items()} if sc else {}
    if "2" in speed:
        out.append(("-n 2 against -n 1", f">= {SPEEDUP}x", f"{speed['2']:.2f}x", _met(speed["2"] >= SPEEDUP)))
    else:
        out.append(("-n 2 against -n 1", f">= {SPEEDUP}x", "not measured", ""))
    su = raw.get("suite")
    if su:
        share = _median(su["oracle"]) / _median(su["wall"])
        out.append(
            (
                "the oracle's share of the whole suite",
                f"< {ORACLE_SHARE:.0%}",
                f"{share:.1%}",
                _met(share < ORACLE_SHARE),
            )
        )
    else:
        out.append(("the oracle's share of the whole suite", f"< {ORACLE_SHARE:.0%}", "not measured", ""))
    if su and "largest" in su and "harness_mb" in su:
        one, whole = su["largest"]["harness_mb"], _median(su["harness_mb"])
        out.append(
            (
                "peak memory: whole suite against its largest cases alone",
                f"<= {MEMORY}x",
                f"{whole:.0f} MB against {one:.0f} MB (largest harness process): {whole / one:.2f}x",
                _met(whole <= MEMORY * one),
            )
        )
    else:
        out.append(("peak memory: whole suite against its largest cases alone", f"<= {MEMORY}x", "not measured", ""))
    re = raw.get("rerun")
    goals = (
        ("a second run on unchanged releases", f"<= {RERUN:.0%} of the first's wall"),
        ("diagnosis, of the first run's wall", f"<= {DIAGNOSIS_SHARE:.0%}"),
        ("the report (index and pages)", f"< {REPORT_MB:.0f} MB"),
        ("the index's first paint in Chromium", f"< {FIRST_PAINT:.0f} s"),
    )
    if not re:
        return out + [(g, t, "not measured", "") for g, t in goals]
    out.append(
        (*goals[0], f"{re['second']:.0f} s against {re['first']:.0f} s: {re['ratio']:.0%}", _met(re["ratio"] <= RERUN))
    )
    out.append(
        (
            *goals[1],
            f"{re['diagnosis']:.0f} s of {re['first']:.0f} s: {re['diagnosis_share']:.1%}",
            _met(re["diagnosis_share"] <= DIAGNOSIS_SHARE),
        )
    )
    out.append((*goals[2], f"{re['report_mb']:.1f} MB, {re['report_files']} files", _met(re["report_mb"] < REPORT_MB)))
    paint = re.get("first_paint")
    out.append(
        (
            *goals[3],
            "not measured (no Chromium)" if not paint else f"{_median(paint):.2f} s",
            "" if not paint else _met(_median(paint) < FIRST_PAINT),
        )
    )
    return out


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def table(raw: dict) -> list[str]:
    lines = ["| goal | target | measured | |", "|---|---|---|---|"]
    lines += [f"| {g} | {t} | {m} | {ok} |" for g, t, m, ok in rows(raw)]
    return lines


if __name__ == "__main__":
    raw = json.loads(open(sys.argv[1], encoding="utf-8").read())
    print("\n".join(table(raw)))
