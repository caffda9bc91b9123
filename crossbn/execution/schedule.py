"""Under pytest-xdist (-n N), each backend's tests go to one worker as one
unit of work, not test by test.

Test by test (xdist's `load`), every worker meets every backend: each
framework is started, imported and warmed up (jit, compile) once per worker,
and each worker keeps one process per framework alive to the end. As one
unit per backend, each framework is paid once per run and a worker holds one
framework's process at a time (plugin.pytest_runtest_teardown closes it when
the backend changes). Measured: benchmarks/README.md.

The unit is xdist's LoadScopeScheduling with the scope read from the test
id, which ends in "-<backend>-<device>]": on the controller, from the ids
the workers collected, so nothing depends on the workers marking their
tests. (xdist's own `--dist loadgroup` with xdist_group marks does not group
under pytest 9.2: its workers' nodeid suffix no longer takes effect,
pytest-dev/pytest-xdist#1386; seen here with xdist 3.8.) Tests that are not crossbn's keep one scope
each, which is `load`. With more workers than backends, xdist shuts the
idle ones down.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling


def scope_of(backends, devices):
    """nodeid -> "crossbn:<backend>" for conformance tests, else the nodeid."""
    # the longest name first: "flax-nnx-jit" before "flax-nnx"
    ends = [(f"-{b}-{d}]", b) for b in sorted(backends, key=len, reverse=True) for d in devices]

    def scope(nodeid: str) -> str:
        for end, backend in ends:
            if nodeid.endswith(end):
                return "crossbn:" + backend
        return nodeid

    return scope


class BackendScheduling(LoadScopeScheduling):
    def __init__(self, config, log, scope):
        super().__init__(config, log)
        self._scope = scope

    def _split_scope(self, nodeid: str) -> str:
        return self._scope(nodeid)
