"""The float64 agreement check the backend test files share.

"A few ulps": the largest float64 errors measured on well-conditioned cases
were 8.5 ulps of the observable's scale (torch, dbeta) and 6
(keras-tensorflow, dgamma); a float32 computation sits near 4e9. 16 leaves
headroom for other seeds without admitting a float32 computation.
"""

import numpy as np

FEW_ULPS = 16


def assert_few_ulps(backend: str, result, expected: dict) -> None:
    """Every compared observable within FEW_ULPS of its scale (max |expected|)
    and within its error bound; the message names backend and observable."""
    for name, obs in result.observables.items():
        ulps = obs.max_abs / np.spacing(np.max(np.abs(expected[name])))
        assert ulps <= FEW_ULPS, f"{backend} {name}: {ulps:.3g} ulps of its scale"
        assert obs.ratio <= 1.0, f"{backend} {name}: error/bound {obs.ratio:.3g}"
