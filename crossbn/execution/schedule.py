"""Under pytest-xdist (-n N), each backend's tests go to one worker as one unit of work, not test by test.

So each framework is started and warmed up once per run, and a worker holds one framework's process at a time.
`BackendScheduling` is xdist's LoadScopeScheduling with the scope (`scope_of`) read from the test id, which ends
in "-<backend>-<device>]"; tests that are not crossbn's keep one scope each.

Design notes: docs/internals/run-and-records.md.
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
