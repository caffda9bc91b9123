"""BatchNorm conformance: one test per (case, backend, device).

Parametrized by the crossbn plugin from --crossbn-suite/--crossbn-backends/
--crossbn-devices. Run it with `crossbn run`, or directly:

    pytest --pyargs crossbn.conformance --crossbn-suite smoke -n 2 --crossbn-out reports/x
"""

import pytest


@pytest.mark.crossbn
def test_batchnorm(crossbn_target, crossbn_check):
    case, backend, device = crossbn_target
    crossbn_check(case, backend, device)
