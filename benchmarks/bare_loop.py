"""The floor crossbn is measured against: one backend's framework calls on a
suite's cases, on inputs generated beforehand, and nothing else.

    python benchmarks/bare_loop.py BACKEND SUITE

It runs as one process per backend with the backend's worker environment
(KERAS_BACKEND, JAX_ENABLE_X64, ...), the arrangement crossbn's worker has:
the framework imported once, then one call per case. A call is the
backend adapter's `run`: NumPy arrays to the framework's tensors, the
framework's BatchNorm (training steps, gradients, evaluation), tensors back
to NumPy. That is the least any harness must do to ask the framework; what
crossbn adds on top (pytest, the worker round trip, the oracle, the
comparison, localization and diagnosis of findings, records, the report) is
the overhead measured. Cases the backend does not support are skipped, as
crossbn skips them; a case the framework raises on still counts as called.

Prints one JSON object: backend, cases called, errors, and seconds for
generating the inputs (not part of the floor), importing the framework and
the loop.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(backend_name: str, suite: str) -> dict:
    start = time.perf_counter()
    from crossbn.backends import discover, load
    from crossbn.oracle import inputs as inputs_mod
    from crossbn.spec.suites import load_suite

    backend = load(discover()[backend_name])
    cases = [c for c in load_suite(suite) if backend.applies(c) and backend.supports(c) is None]
    generated = [inputs_mod.generate(c) for c in cases]
    inputs_s = time.perf_counter() - start

    start = time.perf_counter()
    backend.describe()  # imports the framework (its version and devices)
    import_s = time.perf_counter() - start

    errors = 0
    start = time.perf_counter()
    for case, inputs in zip(cases, generated):
        try:
            backend.run(case, inputs, "cpu")
        except Exception:  # noqa: BLE001 - an unsupported or failing case still cost its call
            errors += 1
    loop_s = time.perf_counter() - start
    return {
        "backend": backend_name,
        "cases": len(cases),
        "errors": errors,
        "inputs_s": inputs_s,
        "import_s": import_s,
        "loop_s": loop_s,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
