"""A backend whose framework is a planted package with one release per
behaviour, for `crossbn bisect` (tests/test_bisect_command.py).

`crossbn_planted_fw` (built by the test into a local package index) says
in `FAULT` which of planted.py's faults its release plants, None for a
correct BatchNorm; the backend runs planted.py's NumPy BatchNorm with it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from planted import Planted  # noqa: E402


class PlantedFramework(Planted):
    name = "planted-fw"
    packages = ("crossbn_planted_fw", "numpy")
    modules = ("crossbn_planted_fw", "numpy")

    def describe(self):
        import crossbn_planted_fw as fw

        return {"version": fw.__version__, "devices": {"cpu": "numpy"}}

    def run(self, case, inputs, device):
        import crossbn_planted_fw as fw

        self.fault = fw.FAULT
        return super().run(case, inputs, device)
