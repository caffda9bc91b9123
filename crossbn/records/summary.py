"""The terminal summary of a conformance run, built on the controller from
the small dicts each test carries in `report.user_properties` (the way
pytest-html builds its report), so it is the same with or without xdist."""

from __future__ import annotations

from collections import Counter, defaultdict

from crossbn.spec.verdicts import FAILING, SEVERITY, UNJUDGED, Verdict

SHOW_FINDINGS = 10
SHOW_REASONS = 2  # per backend: the most common reasons it skipped cases


class Summary:
    def __init__(self) -> None:
        self.counts: dict[str, Counter] = defaultdict(Counter)
        self.versions: dict[str, str] = {}
        self.findings: list[dict] = []
        self.skip_reasons: dict[str, Counter] = defaultdict(Counter)
        self.cross_device: dict[str, Counter] = defaultdict(Counter)  # "backend/device" -> verdicts vs its CPU
        self.cross_version: dict[str, Counter] = defaultdict(Counter)  # "backend vs other" -> verdicts
        self.known_used: Counter = Counter()  # known-differences entry -> findings it matched
        self.unjudged: Counter = Counter()  # backend -> elements the error model could not bound
        self.unjudged_results: Counter = Counter()  # backend -> results with such elements
        self.cached = self.judged = 0  # results whose judgement came from the cache / all that ran
        self.diagnosed: Counter = Counter()  # "own" (a full search) / "confirmed" (root_causes.py)

    def add(self, data: dict) -> None:
        self.counts[data["backend"]][data["verdict"]] += 1
        if data.get("known"):
            self.known_used[data["known"]] += 1
        if data.get("cross_device"):
            self.cross_device[f"{data['backend']}/{data['device']}"][data["cross_device"]] += 1
        if data.get("cross_version"):
            against, verdict = data["cross_version"]
            self.cross_version[f"{data['backend']} vs {against}"][verdict] += 1
        if data.get("unjudged"):
            self.unjudged[data["backend"]] += data["unjudged"]
            self.unjudged_results[data["backend"]] += 1
        if data["verdict"] != Verdict.UNSUPPORTED:
            self.judged += 1
            self.cached += bool(data.get("cached"))
        if data.get("diagnosed"):
            self.diagnosed[data["diagnosed"]] += 1
        if data["verdict"] == Verdict.UNSUPPORTED:
            self.skip_reasons[data["backend"]][data["reason"]] += 1
        self.versions[data["backend"]] = data["version"] or self.versions.get(data["backend"], "")
        if data["verdict"] in FAILING:
            self.findings.append(data)

    def lines(self) -> list[str]:
        if not self.counts:
            return []
        verdicts = [v for v in SEVERITY if any(c[v] for c in self.counts.values())]
        w = max(len("backend"), *map(len, self.counts)) + 1
        out = [f"{'backend':{w}s}" + "".join(f"{v:>13s}" for v in verdicts) + "  version"]
        for backend in sorted(self.counts):
            out.append(
                f"{backend:{w}s}"
                + "".join(f"{self.counts[backend][v]:>13d}" for v in verdicts)
                + f"  {self.versions.get(backend, '')}"
            )
        if self.cross_device:
            out.append("each device against the same backend's CPU outputs:")
            for where in sorted(self.cross_device):
                out.append(
                    f"  {where:{w + 4}s} " + ", ".join(f"{n} {v}" for v, n in sorted(self.cross_device[where].items()))
                )
        if self.cross_version:
            out.append("side by side, each release against the other's outputs (bitwise: identical bits):")
            for pair in sorted(self.cross_version):
                out.append(
                    f"  {pair:{w + 4}s} " + ", ".join(f"{n} {v}" for v, n in sorted(self.cross_version[pair].items()))
                )
        if self.unjudged:
            out.append(f"not judged ({UNJUDGED}): elements (results)")
            out.append(
                "  " + ", ".join(f"{b} {self.unjudged[b]} ({self.unjudged_results[b]})" for b in sorted(self.unjudged))
            )
        if self.cached:
            out.append(f"cache: {self.cached} of {self.judged} results' judgements reused (their outputs unchanged)")
        if self.diagnosed:
            out.append(
                f"diagnosis: {self.diagnosed['own']} searched in full, {self.diagnosed['confirmed']} confirmed "
                f"against a representative of their root cause"
            )
        if self.skip_reasons:
            out.append("skipped (unsupported), most common reasons:")
            for backend in sorted(self.skip_reasons):
                for reason, n in self.skip_reasons[backend].most_common(SHOW_REASONS):
                    out.append(f"  {backend:{w}s} {n:5d}  {reason[:110]}")
        if self.findings:
            shown = sorted(self.findings, key=_order)[:SHOW_FINDINGS]
            out.append(f"worst findings ({len(shown)} of {len(self.findings)}; error/bound, where):")
            for f in shown:
                if f["verdict"] == Verdict.DEVIATION and f["observable"]:
                    what = f"{f['observable']} error/bound {_ratio(f):.3g}"
                else:
                    what = f"{f['observable'] or ''} {f['reason'][:80]}".strip()
                out.append(f"  {f['verdict']:12s} {f['backend'] + '/' + f['device']:{w + 4}s} {f['case']}: {what}")
        return out


def _ratio(f: dict) -> float:
    try:
        return float(f["ratio"])
    except (TypeError, ValueError):
        return 0.0


def _order(f: dict):
    return (-SEVERITY.index(f["verdict"]), -_ratio(f))
