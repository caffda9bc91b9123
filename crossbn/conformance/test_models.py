"""Models conformance: one test per (model case, backend, device).

The `models` suite's networks (crossbn/backends/networks/), parametrized by the crossbn
plugin like test_batchnorm.py, which is the module collected for BatchNorm
suites; this one is collected for model catalogues:

    pytest --pyargs crossbn.conformance --crossbn-suite models -n 2 --crossbn-out reports/x
"""

import pytest


@pytest.mark.crossbn
def test_model(crossbn_target, crossbn_check):
    case, backend, device = crossbn_target
    crossbn_check(case, backend, device)
