"""The Backend protocol every framework adapter implements.

A backend object lives on both sides of the process boundary:
- in the pytest process, only its cheap, import-free parts are used: `name`,
  `worker_env`, `packages`, `conventions`, `available()` and `supports()`;
- in its worker process (see `runner.py`), `describe()` and `run()` import the
  framework, lazily, and do the work.

`run()` returns observables named `<step>.<observable>` (for example
`train0.y`, `train2.running_var`, `eval.dx`) as NumPy arrays in the case's
stored layout and dtype. Observables a framework cannot produce are simply
absent; a case it cannot express at all raises `Unsupported`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import ClassVar

# Observables in dataflow order: localization and reports read them in this order.
OBSERVABLES = (
    "batch_mean", "batch_var", "invstd", "y", "running_mean", "running_var",
    "dbeta", "dgamma", "dx",
)

# The canonical semantics; a backend declares where it differs on purpose.
CANONICAL_CONVENTIONS = {
    # variance fed into the running variance: "biased" or "unbiased" (n/(n-1))
    "running_var": "biased",
}


class Unsupported(Exception):
    """The backend cannot express this case; the message says why."""


class Backend:
    """Base class with the shared cheap parts; subclasses set the ClassVars."""

    name: ClassVar[str]
    # Distribution names whose versions describe this backend (first is the framework).
    packages: ClassVar[tuple[str, ...]] = ()
    # Modules that must be importable for the backend to be available.
    modules: ClassVar[tuple[str, ...]] = ()
    # Environment variables its worker process needs (e.g. KERAS_BACKEND).
    worker_env: ClassVar[dict[str, str]] = {}
    # Documented semantics where they differ from CANONICAL_CONVENTIONS.
    conventions: ClassVar[dict[str, str]] = {}

    def available(self) -> str | None:
        """None, or why the backend cannot run here (checked without importing it)."""
        for module in self.modules:
            if importlib.util.find_spec(module) is None:
                return f"{self.name}: Python module '{module}' is not installed (pip install 'crossbn[{self.extra}]')"
        return None

    extra: ClassVar[str] = "all"

    def versions(self) -> dict[str, str]:
        out = {}
        for pkg in self.packages:
            try:
                out[pkg] = importlib.metadata.version(pkg)
            except importlib.metadata.PackageNotFoundError:
                out[pkg] = "not installed"
        return out

    def convention(self, key: str) -> str:
        return self.conventions.get(key, CANONICAL_CONVENTIONS[key])

    def supports(self, case) -> str | None:  # pragma: no cover - overridden
        """None, or why this case does not apply (decided without importing)."""
        return None

    # ---- worker side ---------------------------------------------------------
    def describe(self) -> dict:
        """Versions and devices, from inside the worker (imports the framework)."""
        raise NotImplementedError

    def run(self, case, inputs: dict, device: str) -> dict:
        raise NotImplementedError
