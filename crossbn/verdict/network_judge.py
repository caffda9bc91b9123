"""One (model case, backend, device): run the network, localize, record.

The models suite's counterpart of crossbn/verdict/judge.py: the hidden states of
worker.run_model against the float64 oracle network's, per layer (network_metrics.py). Verdicts:

  match        no layer introduces an inconsistency
  convention   layers introduce one against the canonical oracle, none under the declared conventions
  deviation    layers introduce one even under the declared conventions
  error / crash / timeout / unsupported   as crossbn/verdict/judge.py reports them

The record is built through crossbn/records/results.py's make_record, plus `layers` (the per-layer
numbers, per step); `worst` and `localization` name the layer the verdict rests on.

Design notes: docs/internals/oracle-and-verdict.md.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from crossbn.execution.runner import DEFAULT_TIMEOUT, device_problem, open_worker, other_release
from crossbn.oracle import network_inputs as inputs_mod
from crossbn.oracle.networks import forward
from crossbn.records.results import finite, make_record
from crossbn.spec.verdicts import Verdict
from crossbn.verdict import network_metrics as metrics


def model_record(
    *,
    case,
    backend: str,
    device: str,
    verdict: str,
    reason: str = "",
    layers: dict | None = None,
    worst: dict | None = None,
    localization: dict | None = None,
    not_exposed=(),
    unexpected=(),
    version: str = "",
    device_name: str = "",
    seconds: float = 0.0,
    backend_seconds: float = 0.0,
    cross_device: dict | None = None,
    backend_info: dict | None = None,
    interpreter: str | None = None,
    cross_version: dict | None = None,
) -> dict:
    """A result record for a model case: make_record's fields, the models
    suite's worst / localization / not_exposed / unexpected, and `layers`."""
    rec: dict[str, Any] = dict(
        make_record(
            case=case,
            backend=backend,
            device=device,
            verdict=verdict,
            version=version,
            device_name=device_name,
            reason=reason,
            seconds=seconds,
            backend_seconds=backend_seconds,
            cross_device=cross_device,
            backend_info=backend_info,
            localization=localization,
            interpreter=interpreter,
            cross_version=cross_version,
        )
    )
    rec.update(
        finite(
            {"worst": worst, "not_exposed": list(not_exposed), "unexpected": list(unexpected), "layers": layers or {}}
        )
    )
    return rec


def _problem(case, states: dict) -> tuple[str | None, list, list]:
    """(what is malformed or None, missing keys, extra keys)."""
    shapes = case.spec.shapes(case.batch)
    wanted = {f"{s}.{n}": shapes[n] for s in case.steps for n in case.spec.names}
    missing = [k for k in wanted if k not in states]
    extra = [k for k in states if k not in wanted]
    problems = [f"{k} is missing" for k in missing]
    for k, shape in wanted.items():
        a = states.get(k)
        if a is None:
            continue
        if not isinstance(a, np.ndarray) or a.dtype.name != case.dtype:
            problems.append(f"{k} is {getattr(a, 'dtype', type(a).__name__)}, expected {case.dtype}")
        elif a.shape != shape:
            problems.append(f"{k} has shape {list(a.shape)}, expected {list(shape)}")
    return ("; ".join(problems) or None), missing, extra


_CONVENTION_KEYS = ("delta", "delta_pre", "R", "R_threshold", "bound", "ratio", "introduces")


def _describe(hits: list[str], layers: dict, limit: int = 4) -> str:
    parts = []
    for key in hits[:limit]:
        step, name = key.split(".")
        e = layers[step][name]
        parts.append(
            f"{key} (δ {e['delta']:.3g}, δ_pre {e['delta_pre']:.3g}, R {e['R']:.3g} > "
            f"{e['R_threshold']:.3g}, δ/bound {e['ratio']:.3g})"
        )
    more = f" and {len(hits) - limit} more" if len(hits) > limit else ""
    return ", ".join(parts) + more


def localize(case, states: dict, inputs: dict, backend) -> tuple[str, str, dict, dict | None, dict | None]:
    """(verdict, reason, layers, worst, localization) of hidden states against
    the oracle, and, where the backend declares conventions of its own,
    against the oracle under them: as in compare.py, it is held to its own
    documented semantics first, so agreeing with the canonical oracle while
    declaring otherwise is a deviation too."""
    canon = forward(case, inputs)
    layers = metrics.layer_map(case, states, canon.states, canon)
    hits = metrics.introducing(layers)
    verdict, reason, basis = "match", "", layers  # basis: the map whose introducing layers the verdict names
    if backend.differs_from_canonical():
        running_var, hyper = backend.convention("running_var"), backend.convention("hyperparameters")
        conv = forward(case, inputs, running_var, hyper)
        declared = metrics.layer_map(case, states, conv.states, conv)
        for step, entries in layers.items():
            for name, e in entries.items():
                e["convention"] = {k: declared[step][name][k] for k in _CONVENTION_KEYS}
        still = metrics.introducing(declared)
        conventions = f"running_var={running_var}, hyperparameters={hyper}"
        if still:
            verdict, basis = "deviation", declared
            reason = (
                f"inconsistency introduced at {_describe(still, declared)} "
                f"(held to its declared conventions: {conventions})"
            )
        elif hits:
            verdict = "convention"
            reason = (
                f"differs from the canonical oracle at {_describe(hits, layers)}, "
                f"as its declared conventions ({conventions}) predict: none introduced under them"
            )
    elif hits:
        verdict, reason = "deviation", f"inconsistency introduced at {_describe(hits, layers)}"
    worst_layer = metrics.worst(basis, case)
    assert worst_layer is not None  # a network has layers, each compared
    name, entry = worst_layer
    worst = {"observable": name, "ratio": entry["ratio"], "verdict": verdict if entry["introduces"] else "match"}
    where = None
    if verdict != Verdict.MATCH:  # in localize.py's form: the first layer that departs
        first = metrics.introducing(basis)
        step, layer = first[0].split(".")
        where = {
            "stage": layer,
            "step": step,
            "observable": first[0],
            "layers": first,
            "how": "per-layer δ and R (CRADLE): the first layer, in step and execution order, "
            "whose R is above its threshold (δ beyond bound)",
        }
    return verdict, reason, layers, worst, where


def judge_model(case, backend_name: str, backend, device: str, pool, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Return the result record of one model case on one backend and device."""
    start = time.perf_counter()
    record = dict(case=case, backend=backend_name, device=device, interpreter=backend.interpreter)
    elapsed = lambda: time.perf_counter() - start
    worker, description, problem = open_worker(backend_name, backend, pool, timeout)
    if problem is not None:
        return model_record(**record, verdict=problem[0], reason=problem[1], seconds=elapsed())
    record.update(version=description["version"], device_name=description["devices"].get(device, ""))
    why = backend.supports_model(case) or device_problem(backend_name, device, description)
    if why is not None:
        return model_record(**record, verdict="unsupported", reason=why, seconds=elapsed())

    inputs = inputs_mod.generate(case)
    outcome = worker.run_model(case, inputs, device, timeout)
    run = dict(backend_info=outcome.info, backend_seconds=outcome.seconds)
    if outcome.status != "ok":
        return model_record(**record, **run, verdict=outcome.status, reason=outcome.message, seconds=elapsed())
    broken, not_exposed, unexpected = _problem(case, outcome.observables)
    if broken:
        return model_record(
            **record,
            **run,
            verdict="error",
            reason=f"{backend_name} returned malformed hidden states: {broken}",
            not_exposed=not_exposed,
            unexpected=unexpected,
            seconds=elapsed(),
        )
    verdict, reason, layers, worst, where = localize(case, outcome.observables, inputs, backend)
    cross = None
    if device != "cpu" and "cpu" in description["devices"]:
        cross = _cross_device(case, outcome.observables, worker.run_model(case, inputs, "cpu", timeout), inputs)
    other, said = other_release(backend, device, pool, timeout)  # side by side: the other release
    versus = (
        said
        if other is None
        else {
            **_cross_device(
                case, outcome.observables, other.run_model(case, inputs, device, timeout), inputs, other.name
            ),
            "version": said["version"],
        }
    )
    return model_record(
        **record,
        **run,
        verdict=verdict,
        reason=reason,
        layers=layers,
        worst=worst,
        localization=where,
        unexpected=unexpected,
        cross_device=cross,
        cross_version=versus,
        seconds=elapsed(),
    )


def _cross_device(case, states: dict, on_cpu, inputs: dict, against: str = "cpu") -> dict:
    """The same backend's hidden states against another run's (on its CPU,
    or of the other installed release): CRADLE's map between the two, both
    charged their rounding."""
    if on_cpu.status != "ok":
        return {"against": against, "verdict": on_cpu.status, "note": (on_cpu.message.splitlines() or [""])[0]}
    broken = _problem(case, on_cpu.observables)[0]
    if broken:  # compared as they are, they would raise in the layer map
        return {"against": against, "verdict": "error", "note": f"malformed hidden states on {against}: {broken}"}
    layers = metrics.compare_backends(case, states, on_cpu.observables, inputs)
    hits = metrics.introducing(layers)
    worst_layer = metrics.worst(layers, case)
    assert worst_layer is not None  # a network has layers, each compared
    name, entry = worst_layer
    return {
        "against": against,
        "verdict": "disagree" if hits else "agree",
        "introducing": hits,
        "worst": name,
        "ratio": entry["ratio"],
    }
