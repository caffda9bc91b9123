"""A backend whose every string is markup: its version, its error message.

The report must show these as text (escaped), never run them. It computes
the one-pass variance (numpy_variants.OnePass), so an offset case deviates
and gets a finding page; on seed 15 it raises with markup in the message."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from numpy_variants import OnePass  # noqa: E402

# A test may plant markup of its own (tests/test_security.py: payloads that set
# window.__pwned if they ever run); worker processes inherit the variable.
MARKUP = (
    os.environ.get("CROSSBN_HOSTILE_MARKUP")
    or "<script>alert('x')</script> & <img src=x onerror=alert(1)> &amp; \"' onmouseover=\"alert(2)"
)


class Hostile(OnePass):
    name = "numpy-hostile"

    def describe(self):
        return {"version": f"1.0 {MARKUP}", "devices": {"cpu": f"cpu {MARKUP}"}}

    def run(self, case, inputs, device):
        if case.seed == 15:
            raise RuntimeError(f"failure with markup: {MARKUP}")
        return super().run(case, inputs, device)
