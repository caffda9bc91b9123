"""A diagnosis as ISSUE.md may state it: consistent with what the run observed.

A fingerprint is inferred from one case, and several formulations can explain
it alike (sums in float16 or in float32, when the sums are short). A run
folder's conventions.jsonl (`crossbn conventions`, a run's first step) holds
what crossbn saw the backend do on probes built to tell such things apart.
`statement` picks what the report may say: the explaining formulation that
agrees with the observation, or the fingerprint with a plain word that the
observation contradicts it, or that the case cannot tell.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from crossbn.oracle.formulation import Formulation
from crossbn.records.results import number
from crossbn.verdict.confidence import formulation_of
from crossbn.verdict.fingerprint import IMPROVEMENT

CONVENTIONS = "conventions.jsonl"
_HALF = ("float16", "bfloat16")


def read(run: Path | None, backend: str, device: str, version: str = "") -> dict[str, str]:
    """{property: observed} for one backend and device from `run`'s
    conventions.jsonl; {} when there is none (or it observed another
    release than `version`)."""
    path = Path(run) / CONVENTIONS if run else None
    if path is None or not path.is_file():
        return {}
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a torn last line of a killed run
        if not isinstance(rec, dict) or (rec.get("backend"), rec.get("device")) != (backend, device):
            continue
        if version and rec.get("version") and rec["version"] != version:
            continue
        if isinstance(rec.get("property"), str) and isinstance(rec.get("observed"), str):
            out[rec["property"]] = rec["observed"]
    return out


formulation = formulation_of  # a Formulation from its label (`compute=float16,running_var=unbiased`)


def accumulator(label: str, dtype: str) -> str:
    """The dtype a formulation accumulates a `dtype` case's sums in."""
    f = formulation(label)
    return f.reduce or f.compute or ("float32" if dtype in _HALF else dtype)


@dataclass(frozen=True)
class Statement:
    formulation: str  # the label stated ("" when there is no diagnosis)
    description: str  # in words, against the backend's documented semantics
    explains: bool  # the stated formulation explains the outputs within rounding
    note: str = ""  # what the observation or the evidence adds, one or two sentences
    settled: bool = True  # False: the observation contradicts it, so a title does not name it
    as_documented: bool = False  # the stated formulation is the documented behaviour itself
    alternative: str = ""  # the label of a formulation with its sums in another dtype that explains the case alike
    alternative_description: str = ""
    common: str | None = None  # what the two alike share, in words, when they differ only in the accumulator
    # an ambiguous confidence (crossbn/verdict/confidence.py): every candidate's label and words, best first
    candidates: tuple[str, ...] = ()
    candidate_descriptions: tuple[str, ...] = ()

    @property
    def cause(self) -> str:
        """What a title may name as the cause: a formulation that explains the outputs, is not the
        documented behaviour itself and is not contradicted by the observation (or the two that
        explain it alike, as two; or, ambiguous, what the outputs are consistent with); "" otherwise."""
        if not (self.settled and self.explains and not self.as_documented):
            return ""
        if self.candidates:
            if "" in self.candidate_descriptions:  # the documented behaviour explains it as well
                return ""
            shown = " or ".join(_joined(d) for d in self.candidate_descriptions[:2])
            more = len(self.candidates) - 2
            return (
                f"consistent with {shown}"
                + (f" (or {more} more)" if more > 0 else "")
                + ": this case cannot tell which"
            )
        if self.alternative:
            sums = sorted({_sums(self.description), _sums(self.alternative_description)})
            if self.common is not None:
                shared = f"{self.common}, with the sums" if self.common else "sums"
                return f"{shared} accumulated in {' or '.join(sums)}: this case cannot tell which"
            return (
                f"either {_joined(self.description)}, or {_joined(self.alternative_description)}: this case cannot "
                "tell which"
            )
        return self.description


def statement(diagnosis: dict, case, base: Formulation, observed: dict[str, str], where: str) -> Statement:
    """What ISSUE.md says of `diagnosis` (a record's) for `case`, given the
    conventions `observed` on the backend (`where`: its name and device) and
    the diagnosis' `confidence`: a formulation is stated as the cause only
    when it is discriminating (or the observation settles it); ambiguous, the
    outputs are said to be consistent with each candidate; unexplained, none
    explains them."""
    conf = diagnosis.get("confidence")
    label = diagnosis.get("formulation") or ""
    if not isinstance(conf, dict) or not label:
        return _stated(diagnosis, case, base, observed, where)
    described = diagnosis.get("description") or formulation(label).describe(case, base)
    main = Statement(
        label, described, bool(diagnosis.get("explains")), as_documented=not formulation(label).changes(base)
    )
    level, candidates = conf.get("level"), [c for c in conf.get("candidates") or () if isinstance(c, str)]
    if level == "unexplained":
        return dataclasses.replace(
            main,
            explains=False,
            note="No formulation crossbn simulated reproduces the outputs within rounding: the closest is not a cause.",
        )
    if case.dtype in _HALF and observed.get(f"reduce_{case.dtype}") in ("float32", case.dtype):
        return _stated(diagnosis, case, base, observed, where)  # what the run observed settles the accumulator
    sep = conf.get("separating") if isinstance(conf.get("separating"), dict) else None
    if level == "ambiguous" and len(candidates) > 1:
        forms = [formulation(c) for c in candidates]
        return dataclasses.replace(
            main,
            candidates=tuple(candidates),
            candidate_descriptions=tuple(f.describe(case, base) if f.changes(base) else "" for f in forms),
            note=_separating_words(sep, conf.get("words") or ""),
        )
    if conf.get("resolved_from") and sep and sep.get("ran"):
        alike = " and ".join(f"`{c}`" for c in sep.get("scores") or candidates)
        return dataclasses.replace(
            main,
            note=f"Of {alike}, which explain this case alike, only `{label}` explains a separating case "
            f"crossbn ran on {where} ({sep.get('case')}).",
        )
    return main


def _separating_words(sep: dict | None, words: str) -> str:
    """What the search for a case that separates the candidates found, in one sentence."""
    if sep and sep.get("case"):
        ran = "it ran" if sep.get("ran") else "it was not run"
        return f"A case with {sep['case']} would separate them; {ran}: {sep.get('result')}."
    if sep:
        return f"No case that separates them was found: {sep.get('result')}."
    tail = words.split("; ", 1)[-1] if "; " in words else "no case that separates them was run"
    return tail[:1].upper() + tail[1:] + "."


def _stated(diagnosis: dict, case, base: Formulation, observed: dict[str, str], where: str) -> Statement:
    """`statement` for a diagnosis without a confidence (and for the observed accumulator)."""
    label = diagnosis.get("formulation") or ""
    if not label:
        return Statement("", "", False)
    described = diagnosis.get("description") or formulation(label).describe(case, base)
    main = Statement(
        label, described, bool(diagnosis.get("explains")), as_documented=not formulation(label).changes(base)
    )
    if case.dtype not in _HALF:
        return main
    mine = accumulator(label, case.dtype)
    seen = observed.get(f"reduce_{case.dtype}")
    alike = [
        e
        for e in diagnosis.get("evidence") or ()
        if number(e.get("score")) <= 1.0
        and number(e.get("ulps")) <= IMPROVEMENT * number(diagnosis.get("ulps"))
        and accumulator(e.get("formulation") or "", case.dtype) != mine
    ]
    if seen in ("float32", case.dtype):
        probe = (
            f"`crossbn conventions` observed {where} accumulate {case.dtype} statistics in {seen} "
            f"(4,096 values per channel, where the two differ plainly)"
        )
        if seen == mine:
            return dataclasses.replace(main, note=f"{probe}, as this formulation does.")
        agrees = [  # the evidence is ranked, best first
            e
            for e in diagnosis.get("evidence") or ()
            if number(e.get("score")) <= 1.0 and accumulator(e.get("formulation") or "", case.dtype) == seen
        ]
        if agrees:
            other = agrees[0]["formulation"]
            return Statement(
                other,
                formulation(other).describe(case, base),
                True,
                f"{probe}. Of the formulations that explain this case, this is the one that agrees "
                f"with that; the fingerprint's first pick, {described} (`{label}`), "
                + ("explains it as well." if main.explains else "came nearer by ulp distance."),
            )
        return dataclasses.replace(
            main,
            note=f"{probe}, which the nearest formulation, with its sums in {mine}, contradicts: it is "
            f"the closest of those simulated, not the cause, which this case does not settle.",
            settled=False,
        )
    if alike:
        other = alike[0]["formulation"]  # the evidence is ranked, best first
        return dataclasses.replace(
            main,
            note=f"One accumulates the sums in {mine}, the other in {accumulator(other, case.dtype)}; this case "
            f"cannot tell which {where} does (`crossbn conventions` observes it).",
            alternative=other,
            alternative_description=_summed(formulation(other).describe(case, base), other, case.dtype),
            description=_summed(described, label, case.dtype),
            common=_common(label, other, case, base),
        )
    return main


def _summed(description: str, label: str, dtype: str) -> str:
    """A description that names the dtype its sums accumulate in."""
    if "accumulated in" in description:
        return description
    return f"{description}, sums accumulated in {accumulator(label, dtype)}"


def _common(label: str, other: str, case, base: Formulation) -> str | None:
    """What two formulations that differ only in their accumulator share, in words ("" when that is
    the documented behaviour); None when they differ in more."""
    mine, theirs = (dataclasses.replace(formulation(x), reduce="") for x in (label, other))
    if mine.compute_dtype(case) != theirs.compute_dtype(case) or dataclasses.replace(
        mine, compute=""
    ) != dataclasses.replace(theirs, compute=""):
        return None
    return mine.describe(case, base) if mine.changes(base) else ""


def _sums(description: str) -> str:
    """The accumulator a `_summed` description names."""
    return description.rsplit("accumulated in ", 1)[1].split(",", 1)[0]


def _joined(description: str) -> str:
    """A description's aspects joined with "and", so two of them can stand side by side in one sentence."""
    return " and ".join(description.split(", "))
