"""One (case, backend, device): run it, compute the truth, compare, record.

This is the whole pipeline of DESIGN.md for a single result:
catalogue -> Case -> inputs -> worker/backend -> observables
                      `-> reference -> expected (+ error bounds) -> compare -> record
The pytest plugin calls it once per test; nothing here knows about pytest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from contextlib import contextmanager
from typing import Any

import numpy as np

from crossbn.execution.runner import DEFAULT_TIMEOUT, WorkerPool, device_problem, open_worker, other_release
from crossbn.oracle import expected as expected_mod, inputs as inputs_mod
from crossbn.oracle.tolerance import model_bounds
from crossbn.records.cache import FRESH, Judgements, key as cache_key
from crossbn.records.results import make_record
from crossbn.verdict.compare import compare, full_bound
from crossbn.verdict.confidence import assess
from crossbn.verdict.fingerprint import diagnose
from crossbn.verdict.localize import first_off, localize
from crossbn.verdict.outputs import compare_runs, output_problem, without_gradients
from crossbn.verdict.root_causes import OWN, RootCauses, confirm, confirmed_localization, signature

# Verdicts that get a stage and a fingerprint: the result was computed, and
# it differs from the oracle (or differs only by the documented convention).
EXPLAINED = frozenset({"deviation", "nan-mismatch", "convention"})


def expectation(
    case,
    inputs,
    running_var: str = "biased",
    hyperparameters: str = "exact",
    empty_batch: str = "nan",
    frozen: str = "batch",
):
    if hyperparameters == "float32":  # the case as a format with 32-bit attributes stores it
        case = dataclasses.replace(case, eps=float(np.float32(case.eps)), momentum=float(np.float32(case.momentum)))
    exp, traces = expected_mod.simulate(case, inputs, running_var=running_var, empty_batch=empty_batch, frozen=frozen)
    return exp, model_bounds(case, traces), traces


class Clock:
    """Seconds spent in each phase of one judgement: the record's `timings`
    (benchmarks/ adds them up to say where a run's time goes)."""

    def __init__(self):
        self.spent: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.spent[phase] = self.spent.get(phase, 0.0) + time.perf_counter() - start

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in self.spent.items()}


class Judged:
    """A backend's outputs for one (case, inputs) held against the oracle:
    what the verdict, the probes and the fingerprint all need."""

    def __init__(self, case, inputs, observables, backend, clock: Clock | None = None):
        clock = clock or Clock()
        self.case, self.inputs, self.actual = case, inputs, observables
        with clock("oracle"):
            self.exp, self.bounds, self.traces = expectation(case, inputs)
            self.convention = None
            if backend.differs_from_canonical():  # held to its documented semantics first (compare.py)
                self.convention = expectation(case, inputs, **backend.semantics())[:2]
        self.notes = []
        if case.reduction_size == 0:
            self.notes.append(_empty_batch_note(case, backend))
        if backend.no_gradients and case.gradients:
            self.exp, self.bounds = without_gradients(self.exp, self.bounds)
            if self.convention is not None:
                self.convention = without_gradients(*self.convention)
            self.notes.append(f"gradients not compared: {backend.no_gradients}")
        with clock("compare"):
            self.broken = output_problem(case, observables, self.exp)
            self.comparison = (
                None if self.broken else compare(observables, self.exp, self.bounds, self.convention, case.channel_axis)
            )

    def full_bounds(self) -> dict:
        return {
            k: full_bound(self.bounds[k], self.exp[k], np.dtype(self.actual[k].dtype).name)
            for k in self.exp
            if k in self.actual
        }


def _empty_batch_note(case, backend) -> str:
    """What an empty batch (N = 0) is held to, said on its every result."""
    note = "an empty batch (N = 0): y and dx are empty, dgamma and dbeta are 0 (sums over no elements)"
    if case.train_steps:
        note += ", the batch mean and variance of no values are NaN"
        if case.track_running_stats:
            kept = backend.convention("empty_batch") == "skip"
            note += (
                f", and {backend.name} declares that such a batch leaves the running statistics unchanged "
                "(empty_batch=skip; canonical: updated with the NaN statistics)"
                if kept
                else ", so the running statistics become NaN"
            )
    return note


def explain_finding(
    judged: Judged, backend, name: str, device, worker, timeout, clock: Clock, causes: RootCauses | None
) -> tuple[dict, dict, str | None]:
    """Localization and fingerprint: confirmed against a representative of
    the finding's root cause where one explains it (root_causes.py), else
    the full search, which then represents its group. The third value is
    the finding's signature (None without groups)."""
    c, semantics = judged.comparison, backend.semantics()
    assert c is not None  # only a compared result is explained
    compared = {k: judged.actual[k] for k in c.observables}
    sig = None
    if causes is not None and first_off(c, c.verdict) is not None:
        sig = signature(judged.case, name, device, c)
        for rep in causes.representatives(sig):
            with clock("diagnose"):
                diagnosis = confirm(
                    rep, judged.case, judged.inputs, compared, judged.exp, judged.bounds, judged.traces, semantics
                )
            if diagnosis is not None:
                where = confirmed_localization(rep, judged.case, c)
                if causes.mode == "audit":  # the member's own diagnosis too, to hold the grouping to it
                    own_where, own = _full_explain(judged, compared, backend, device, worker, timeout, Clock())
                    diagnosis["audit"] = {
                        "formulation": own["formulation"],
                        "explains": own["explains"],
                        "score": own["score"],
                        "stage": own_where["stage"],
                    }
                return where, diagnosis, sig
    where, diagnosis = _full_explain(judged, compared, backend, device, worker, timeout, clock)
    if sig is not None and causes is not None:  # a signature is made only with groups
        causes.add(sig, judged.case, diagnosis, where, semantics)
    return where, diagnosis, sig


def _full_explain(judged: Judged, compared: dict, backend, device, worker, timeout, clock: Clock):
    """Localization (with probes on the same backend) and the fingerprint search."""

    def run_judged(name, pcase, pinputs):
        why = backend.supports(pcase)
        if why is not None:
            return f"unsupported: {why}"
        outcome = worker.run(pcase, pinputs, device, timeout)
        if outcome.status != "ok":
            return f"{outcome.status}: {outcome.message.splitlines()[0] if outcome.message else ''}"
        probe = Judged(pcase, pinputs, outcome.observables, backend)
        return probe.broken or probe

    def run_probe(name, pcase, pinputs):  # localize.py's probes: the comparison
        probe = run_judged(name, pcase, pinputs)
        return probe if isinstance(probe, str) else probe.comparison

    def run_outputs(name, pcase, pinputs):  # confidence.py's separating case: the compared outputs
        probe = run_judged(name, pcase, pinputs)
        return probe if isinstance(probe, str) else {k: probe.actual[k] for k in probe.comparison.observables}

    c = judged.comparison
    assert c is not None  # only a compared result is explained
    with clock("localize"):  # probes included: their backend runs, oracles and comparisons
        where = localize(
            judged.case, judged.inputs, c, c.verdict, judged.actual, judged.traces, judged.full_bounds(), run_probe
        )
    with clock("diagnose"):
        diagnosis = diagnose(
            judged.case, judged.inputs, compared, judged.exp, judged.bounds, judged.traces, **backend.semantics()
        )
    with clock("confidence"):  # a separating case, where the fingerprint is ambiguous and that is cheap
        diagnosis = assess(judged.case, compared, diagnosis, run_outputs, backend.semantics())
    where["source"] = OWN
    return where, diagnosis


def digests(observables: dict) -> dict[str, str]:
    """A short hash of each output array (dtype, shape and bytes): a baseline
    sees a change of even one bit, within the bound or not."""
    out = {}
    for name in sorted(observables):
        a = np.ascontiguousarray(observables[name])
        h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
        out[name] = h.hexdigest()[:16]
    return out


def _versus(case, inputs, observables, bounds, device, backend, name, pool, timeout) -> dict | None:
    """Side by side: this backend's outputs against the same case run on the
    other installed release of its framework (`Backend.compare_with`)."""
    other, description = other_release(backend, device, pool, timeout)
    if other is None:
        return description
    ran = other.run(case, inputs, device, timeout)
    if ran.status != "ok":
        return {
            "against": other.name,
            "version": description["version"],
            "verdict": ran.status,
            "note": (ran.message.splitlines() or [""])[0],
        }
    return {**compare_runs(observables, ran.observables, bounds, name, other.name), "version": description["version"]}


def judge(
    case,
    backend_name: str,
    backend,
    device: str,
    pool: WorkerPool,
    timeout: float = DEFAULT_TIMEOUT,
    keep: dict | None = None,
    limits=None,
    causes: RootCauses | None = None,
    cache: Judgements | None = None,
) -> dict:
    """Return the result record (see results.make_record). `keep`, when
    given, receives the inputs and the `Judged` outputs held against the
    oracle (crossbn/bugreport reads the arrays a record only summarizes).
    `limits` (crossbn/execution/limits.py): a case estimated over the memory limit is
    refused before anything is started or generated. `causes`: the run's
    root-cause groups (root_causes.py); without them every finding is
    diagnosed on its own. `cache` (cache.py): an unchanged output's
    judgement is taken from it, a new one written to it."""
    start, clock = time.perf_counter(), Clock()

    def done(**fields) -> dict[str, Any]:
        return dict(make_record(**record, **fields, seconds=time.perf_counter() - start, timings=clock.rounded()))

    record = dict(case=case, backend=backend_name, device=device, interpreter=backend.interpreter)
    refused = limits.refuse(case) if limits is not None else None
    if refused is not None:
        return done(verdict="unsupported", reason=refused)
    with clock("start"):  # the worker's start and the framework's import, on its first case only
        worker, description, problem = open_worker(backend_name, backend, pool, timeout)
    if problem is not None:
        return done(verdict=problem[0], reason=problem[1])
    record.update(version=description["version"], device_name=description["devices"].get(device, ""))
    why = (
        backend.supports(case)
        if backend.applies(case)
        else f"the case sets {', '.join(sorted(case.option_families))} switches, which {backend_name} does not have"
    )
    if why is None:
        why = device_problem(backend_name, device, description)
    if why is not None:
        return done(verdict="unsupported", reason=why)

    with clock("inputs"):
        inputs = inputs_mod.generate(case)
    with clock("backend"):  # the round trip: encoding, the worker's own time (backend_seconds), decoding
        outcome = worker.run(case, inputs, device, timeout)
    if outcome.status != "ok":
        return done(
            verdict=outcome.status, reason=outcome.message, backend_info=outcome.info, backend_seconds=outcome.seconds
        )
    entry_key = None
    if cache is not None and keep is None and device == "cpu" and not backend.compare_with:
        # (another device or release is compared live: such a result is not cached)
        with clock("cache"):
            entry_key = cache_key(
                case=case,
                backend=backend_name,
                device=device,
                description=description,
                mode=causes.mode if causes is not None else "each",
                inputs=digests(inputs),
                outputs=digests(outcome.observables),
            )
            entry = cache.get(entry_key)
        if entry is not None:
            cached = entry["record"]
            if causes is not None and entry.get("signature") and (cached.get("diagnosis") or {}).get("source") == OWN:
                causes.add(entry["signature"], case, cached["diagnosis"], cached["localization"], backend.semantics())
            fresh: dict[str, Any] = dict(
                make_record(
                    **record,
                    verdict=cached["verdict"],
                    seconds=time.perf_counter() - start,
                    timings=clock.rounded(),
                    backend_info=outcome.info,
                    backend_seconds=outcome.seconds,
                )
            )
            return {**cached, **{k: fresh[k] for k in FRESH}, "cached": True}
    judged = Judged(case, inputs, outcome.observables, backend, clock)
    if keep is not None:
        keep.update(inputs=inputs, judged=judged)
    if judged.broken:
        return done(
            verdict="error",
            reason=f"{backend_name} returned malformed outputs: {judged.broken}",
            backend_info=outcome.info,
            backend_seconds=outcome.seconds,
        )
    comparison = judged.comparison
    assert comparison is not None  # malformed outputs were recorded above
    cross = None
    with clock("cross"):
        if device != "cpu" and "cpu" in description["devices"]:
            # within one framework, this device against its own CPU path
            on_cpu = worker.run(case, inputs, "cpu", timeout)
            cross = (
                compare_runs(outcome.observables, on_cpu.observables, judged.bounds, device, "cpu")
                if on_cpu.status == "ok"
                else {"against": "cpu", "verdict": on_cpu.status, "note": on_cpu.message.splitlines()[0]}
            )
        versus = _versus(case, inputs, outcome.observables, judged.bounds, device, backend, backend_name, pool, timeout)
    where = diagnosis = sig = None
    if comparison.verdict in EXPLAINED:
        where, diagnosis, sig = explain_finding(judged, backend, backend_name, device, worker, timeout, clock, causes)
    reason = "; ".join(n for n in (comparison.note, *judged.notes) if n)
    with clock("record"):
        summary, digest = inputs_mod.summarize(inputs), digests(outcome.observables)
        for name, d in digests(inputs).items():  # the same case gives these bits on every run (determinism)
            summary[name]["digest"] = d
    rec = done(
        verdict=comparison.verdict,
        comparison=comparison,
        reason=reason,
        inputs=summary,
        digests=digest,
        cross_device=cross,
        cross_version=versus,
        localization=where,
        diagnosis=diagnosis,
        backend_info=outcome.info,
        backend_seconds=outcome.seconds,
    )
    if entry_key is not None and cache is not None:  # a key is made only with a cache
        cache.put(entry_key, rec, signature=sig)
    return rec
