"""One (case, backend, device): run it, compute the truth, compare, record.

This is the whole pipeline of DESIGN.md for a single result:
catalogue -> Case -> inputs -> worker/backend -> observables
                      `-> reference -> expected (+ error bounds) -> compare -> record
The pytest plugin calls it once per test; nothing here knows about pytest.
"""

from __future__ import annotations

import time

from . import expected as expected_mod
from . import inputs as inputs_mod
from .compare import compare
from .results import make_record
from .runner import DEFAULT_TIMEOUT, WorkerPool
from .tolerance import model_bounds


def _expectation(case, inputs, running_var: str):
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
        verdict = {"error": "crash", "unsupported": "unsupported"}.get(outcome.status, outcome.status)
        return make_record(**record, verdict=verdict, reason=outcome.message,
                           backend_seconds=outcome.seconds, seconds=time.perf_counter() - start)
    exp, bounds = _expectation(case, inputs, "biased")
    convention = None
    if backend.convention("running_var") != "biased":
        convention = _expectation(case, inputs, backend.convention("running_var"))
    comparison = compare(outcome.observables, exp, bounds, convention)
    return make_record(**record, verdict=comparison.verdict, comparison=comparison,
                       backend_seconds=outcome.seconds, seconds=time.perf_counter() - start)
