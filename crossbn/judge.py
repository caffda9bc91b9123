"""One (case, backend, device): run it, compute the truth, compare, record.

This is the whole pipeline of DESIGN.md for a single result:
catalogue -> Case -> inputs -> worker/backend -> observables
                      `-> reference -> expected (+ error bounds) -> compare -> record
The pytest plugin calls it once per test; nothing here knows about pytest.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from . import expected as expected_mod
from . import inputs as inputs_mod
from .compare import compare
from .outputs import compare_devices, output_problem, without_gradients
from .results import make_record
from .runner import DEFAULT_TIMEOUT, WorkerPool
from .tolerance import model_bounds


def _expectation(case, inputs, running_var: str = "biased", hyperparameters: str = "exact"):
    if hyperparameters == "float32":  # the case as a format with 32-bit attributes stores it
        case = dataclasses.replace(case, eps=float(np.float32(case.eps)), momentum=float(np.float32(case.momentum)))
    exp, traces = expected_mod.simulate(case, inputs, running_var=running_var)
    return exp, model_bounds(case, traces)


def judge(case, backend_name: str, backend, device: str, pool: WorkerPool,
          timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Return the result record (see results.make_record)."""
    start = time.perf_counter()
    record = dict(case=case, backend=backend_name, device=device)
    missing = backend.available()
    if missing is not None:
        return make_record(**record, verdict="unsupported", reason=f"backend unavailable: {missing}",
                           seconds=time.perf_counter() - start)
    worker = pool.worker(backend_name)
    description = worker.describe(timeout)
    if "error" in description:
        return make_record(**record, verdict="crash", reason=f"worker failed to start: {description['error']}",
                           seconds=time.perf_counter() - start)
    record.update(version=description["version"], device_name=description["devices"].get(device, ""))
    why = backend.supports(case) if backend.applies(case) else \
        f"the case sets {', '.join(sorted(case.option_families))} switches, which {backend_name} does not have"
    if why is None and device not in description["devices"]:
        why = f"device '{device}' is not available to {backend_name} here (has: {', '.join(description['devices'])})"
    if why is not None:
        return make_record(**record, verdict="unsupported", reason=why, seconds=time.perf_counter() - start)

    inputs = inputs_mod.generate(case)
    outcome = worker.run(case, inputs, device, timeout)
    if outcome.status != "ok":
        return make_record(**record, verdict=outcome.status, reason=outcome.message, backend_info=outcome.info,
                           backend_seconds=outcome.seconds, seconds=time.perf_counter() - start)
    exp, bounds = _expectation(case, inputs)
    convention = None
    if backend.differs_from_canonical():  # held to its documented semantics first (compare.py)
        convention = _expectation(case, inputs, backend.convention("running_var"),
                                  backend.convention("hyperparameters"))
    notes = []
    if backend.no_gradients and case.gradients:
        exp, bounds = without_gradients(exp, bounds)
        if convention is not None:
            convention = without_gradients(*convention)
        notes.append(f"gradients not compared: {backend.no_gradients}")
    broken = output_problem(case, outcome.observables, exp)
    if broken:
        return make_record(**record, verdict="error", reason=f"{backend_name} returned malformed outputs: {broken}",
                           backend_info=outcome.info, backend_seconds=outcome.seconds,
                           seconds=time.perf_counter() - start)
    comparison = compare(outcome.observables, exp, bounds, convention)
    cross = None
    if device != "cpu" and "cpu" in description["devices"]:
        # within one framework, this device against its own CPU path
        on_cpu = worker.run(case, inputs, "cpu", timeout)
        cross = (compare_devices(outcome.observables, on_cpu.observables, bounds, device) if on_cpu.status == "ok"
                 else {"against": "cpu", "verdict": on_cpu.status, "note": on_cpu.message.splitlines()[0]})
    reason = "; ".join(n for n in (comparison.note, *notes) if n)
    return make_record(**record, verdict=comparison.verdict, comparison=comparison, reason=reason,
                       cross_device=cross, backend_info=outcome.info, backend_seconds=outcome.seconds,
                       seconds=time.perf_counter() - start)
