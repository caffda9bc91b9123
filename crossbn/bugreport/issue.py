"""ISSUE.md: the text a maintainer reads, from templates/ISSUE.md.j2.

Every sentence is made from the minimized case's own record: the verdict's
numbers (how many elements, how far, where), the localization's stage and
the fingerprint's formulation as observed.py states it (consistent with the
run's observed conventions), the verification run's output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crossbn.bugreport import casefile, happened, script
from crossbn.spec.case import Case
from crossbn.spec.verdicts import Verdict

_HOW = {
    "observed": "seen directly in the values crossbn reads from the framework",
    "probe": "found by rerunning the case with one stage's inputs replaced by exact values",
    "fit": "inferred from how the output's error is shaped per channel: not an offset or a scale, so "
    "it arises in the normalization itself",
}


# An observable as the issue names it.
OBSERVABLE_WORDS = {
    "y": "output y",
    "running_mean": "running mean",
    "running_var": "running variance",
    "dx": "input gradient dx",
    "dgamma": "gradient dgamma",
    "dbeta": "gradient dbeta",
}


def step_words(step: str) -> str:
    return "in eval mode" if step == "eval" else f"in training step {int(step[5:]) + 1}"


_STAGE = {"normalized": "normalized values (x - mean) * inverse std", "eval statistics": "statistics used in eval mode"}


def _expected(case: Case, at, backend) -> str:
    step, _, what = at.target.partition(".")
    conv = []
    if backend.convention("running_var") == "unbiased":
        conv.append("the running variance fed the unbiased batch variance, as this framework documents")
    if backend.convention("hyperparameters") == "float32":
        conv.append("eps and momentum as the 32-bit floats the format stores")
    if case.frozen and backend.convention("frozen") == "inference":
        conv.append("a frozen layer's training step run as inference, as this framework documents")
    held = f" Held to the framework's documented convention: {'; '.join(conv)}." if conv else ""
    if at.record.get("verdict") == Verdict.NAN_MISMATCH:  # positions, not magnitudes: no bound to quote
        return (
            f"BatchNorm of a {case.dtype} input of shape {tuple(case.shape)} "
            f"({case.layout.replace('_', '-')}), eps {case.eps:g}, momentum {case.momentum:g} (weight kept on "
            f"the old running value), should give the {OBSERVABLE_WORDS[what]} {step_words(step)} as the exact result "
            f"rounded to {case.dtype}: NaN exactly where that is NaN, and ±Inf exactly where it is infinite or "
            f"beyond {case.dtype}'s range (the inline float64 formula in repro.py).{held}"
        )
    return (
        f"BatchNorm of a {case.dtype} input of shape {tuple(case.shape)} ({case.layout.replace('_', '-')}), "
        f"eps {case.eps:g}, momentum {case.momentum:g} (weight kept on the old running value), should give the "
        f"{OBSERVABLE_WORDS[what]} {step_words(step)} equal to the exact result rounded to {case.dtype}, to within "
        f"{_span(at.tolerance)} per element: crossbn's bound on the rounding error a correct {case.dtype} implementation may "
        f"add, summed over the formula's operations (the inline float64 formula in repro.py is far closer "
        f"than that).{held}"
    )


def _span(bound) -> str:
    b = np.asarray(bound, np.float64)
    lo, hi = float(b.min()), float(b.max())
    return f"{hi:.3g}" if lo == hi else f"{lo:.3g} to {hi:.3g}"


def _happened(label: str, at) -> str:
    rec = at.record
    if rec["verdict"] == Verdict.ERROR:
        first = ((rec.get("reason") or "").splitlines() or [""])[0]
        return f"{label} raises instead of returning a value: {first}"
    measured = happened.measure(at)
    if measured is None:  # no judged outputs kept: the record's own words
        return f"{label}'s {at.target}: {rec.get('reason') or 'it departs from the expected value'}."
    return happened.sentence(label, at.target, measured)


# What an eval-mode localization's probe or fit showed (crossbn/verdict/localize.py).
_EVAL_HOW = {
    ("eval-given-stats", "running mean"): "given the exact running statistics, the eval step is right: "
    "the running mean the framework kept from training was wrong",
    ("eval-given-stats", "running variance"): "given the exact running statistics, the eval step is right: "
    "the running variance the framework kept from training was wrong",
    ("eval-given-batch-stats", "eval statistics"): "rerun with the batch's own exact statistics given as the "
    "running ones, the eval step is right: on the case it normalized with other statistics than it was given",
    ("eval-given-batch-stats", "inverse std"): "rerun with the batch's own exact statistics given as the "
    "running ones, the eval step is still off by a per-channel scale: the statistics are right and the "
    "inverse standard deviation made of them is not",
    ("eval-given-batch-stats", "normalized"): "rerun with the batch's own exact statistics given as the "
    "running ones, the eval step is still off by a per-channel offset: the statistics are right and "
    "their use in the normalization is not",
}


def how_words(loc: dict) -> str:
    """How the localization found its stage, in words for the issue."""
    how, stage = loc.get("how"), loc.get("stage")
    ran = [p["name"] for p in loc.get("probes") or [] if p.get("ran")]
    for name in reversed(ran):  # the last probe that ran decided
        if (name, stage) in _EVAL_HOW:
            return _EVAL_HOW[(name, stage)]
    ratio = loc.get("batch_statistics_ratio")
    if how == "fit" and stage == "eval statistics" and ratio is not None and float(ratio) <= 1:
        return (
            "the eval step's output is what the batch's own statistics give, within its bound: "
            "not the running statistics it was given"
        )
    if how == "fit" and stage == "inverse std" and (loc.get("observable") or "").endswith(".dx"):
        return "the eval step's input gradient is off by a per-channel scale, which in eval mode is the inverse std's"
    if how == "fit" and stage in _FIT_SHAPE:
        return f"inferred from how the output's error is shaped per channel: {_FIT_SHAPE[stage]}"
    return _HOW.get(how or "", how or "")


# the per-channel shape of the error behind a stage the fit names
_FIT_SHAPE = {
    "inverse std": "a scale, as a wrong inverse std makes",
    "batch mean": "an offset, as a wrong mean makes",
    "eval statistics": "a scale and an offset, as statistics other than the running ones make (no rerun "
    "could tell the statistics from their use)",
}


def _diagnosis(rec: dict, stated) -> str:
    loc, diag = rec.get("localization") or {}, rec.get("diagnosis") or {}
    if rec["verdict"] == Verdict.ERROR:
        return "The framework raises before producing outputs; there is no stage to localize."
    parts = []
    if loc.get("stage"):
        how = how_words(loc)
        parts.append(
            f"crossbn follows the values through BatchNorm's dataflow (batch mean, batch variance, "
            f"inverse std, normalized values, affine output, running statistics, gradients): they first "
            f"depart from the exact ones at the **{_STAGE.get(loc['stage'], loc['stage'])}** "
            f"{step_words(loc.get('step') or 'train0')}"
            f"{f' ({how})' if how else ''}."
        )
    if stated is not None and stated.formulation:
        parts.append(_fit(stated, diag))
        if stated.note:
            parts.append(stated.note)
    return " ".join(parts) or "crossbn could not localize this finding."


def _fit(stated, diag: dict) -> str:
    """How the stated formulation fits, against the documented behaviour (said once when they are the same)."""
    searched = f"Of {diag.get('searched', 'several')} alternative formulations crossbn simulated, "
    documented = diag.get("documented", "the canonical formulas")
    if stated.alternative:
        return (
            f"{searched}two explain the outputs alike, to within their own rounding: **{stated.description}** "
            f"(`{stated.formulation}`) and **{stated.alternative_description}** (`{stated.alternative}`); the "
            f"documented behaviour is {documented}."
        )
    if stated.candidates:  # an ambiguous confidence: consistent with each, none named as the cause
        alike = "; ".join(
            f"**{d or f'the documented behaviour itself ({documented})'}** (`{c}`)"
            for c, d in zip(stated.candidates, stated.candidate_descriptions)
        )
        return (
            f"{searched}{len(stated.candidates)} explain the outputs alike, to within their own rounding, so the "
            f"outputs are consistent with each and none is named as the cause: {alike}; the documented behaviour "
            f"is {documented}."
        )
    if stated.as_documented:
        if stated.explains:
            return f"{searched}the documented behaviour itself ({documented}) explains the outputs."
        return (
            f"{searched}none explains the outputs; the closest is the documented behaviour itself "
            f"({documented}, `{stated.formulation}`)."
        )
    fits = (
        "explains the outputs to within its own rounding"
        if stated.explains
        else "comes closest to the outputs, without explaining them fully"
    )
    return (
        f"{searched}**{stated.description}** (`{stated.formulation}`) {fits}; the documented behaviour is {documented}."
    )


def _times(ratio: float) -> str:
    if ratio == ratio and ratio != float("inf"):
        return f"{ratio:.3g} times the bound"
    return "NaN or infinite where the expected value is not (or the other way round)"


def kept_sentence(at, kept) -> str:
    """How plainly the minimized case shows the finding, against the original."""
    if kept is None or at.target is None or at.strength is None:
        return ""
    target, strength, floor = kept
    measured = happened.measure(at)
    if at.strength == float("inf") and measured is not None and measured.furthest.nonfinite:
        mine = f"Its {at.target} has {measured.furthest.words()} (index {measured.furthest.where})."
    else:
        mine = f"Its {at.target} is {_times(at.strength)}."
    return (
        f"{mine} The original case's strongest public output, {target}, was {_times(strength)}; a smaller case "
        f"is kept only while its strongest public output stays at least {floor:.3g} times past the bound (the "
        f"original's, or 10 if that is less)."
    )


def issue_text(
    *,
    lab,
    at,
    title: str,
    text: str,
    ran,
    tried: int,
    known,
    count: int,
    dtypes: str,
    worst: str,
    original: str,
    system: dict,
    stated=None,
    kept: tuple | None = None,
    regression: dict | None = None,
) -> str:
    import jinja2

    from crossbn.bugreport.regression import sentence

    fw = script.framework(lab.name)
    rec = at.record
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    links = [f"{k.link} (crossbn's known-differences entry: {k.reason})" for k in known if k.link and k.matches(rec)]
    doc = lab.backend.declared.doc
    if doc:
        links.append(f"{doc} (the documentation crossbn holds {lab.name} to)")
    case_rows = [(f, getattr(at.case, f)) for f in casefile.FIELDS] + (
        [("options", dict(at.case.options))] if at.case.options else []
    )
    return env.get_template("ISSUE.md.j2").render(
        title=title,
        versions=ran.versions,
        backend=lab.name,
        version=rec.get("version", ""),
        device=lab.device,
        device_name=rec.get("device_name", ""),
        os=system["os"],
        cpu=system["cpu"],
        gpu=system["gpu"],
        python=system["python"],
        expected_text=_expected(at.case, at, lab.backend)
        if rec["verdict"] != Verdict.ERROR
        else "BatchNorm of this input has a value (see the inline formula in repro.py); the framework should return it.",
        happened_text=_happened(fw.label, at),
        tried=tried,
        original=original,
        case_rows=case_rows,
        count=count,
        dtypes=dtypes,
        worst=worst,
        diagnosis_text=_diagnosis(rec, stated),
        kept_text=kept_sentence(at, kept),
        requirement=fw.requirement,
        verification=f"exit {ran.returncode} in {ran.seconds:.1f} s",
        output=ran.shown.strip(),
        script=text.rstrip(),
        links=links,
        regression_text=sentence(regression) if regression else "",
    )
