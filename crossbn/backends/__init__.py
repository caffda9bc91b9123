"""The backend registry.

Backends are found through the `crossbn.backends` entry-point group — the
built-in ones are registered there in pyproject.toml exactly as a user's
package would register its own — and through module files named on the
command line (`--crossbn-backend-module path/to/mine.py`), whose `Backend`
subclasses with a `name` are added. A spec is "module:Class" or
"/path/file.py:Class"; worker processes rebuild a backend from its spec.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
from pathlib import Path

from .base import OBSERVABLES, Backend, Unsupported

__all__ = ["Backend", "Unsupported", "OBSERVABLES", "BackendError", "discover", "load", "resolve"]

ENTRY_POINT_GROUP = "crossbn.backends"


class BackendError(ValueError):
    """An unknown backend name or a backend module that cannot be loaded."""


def _module_file_specs(path: str) -> dict[str, str]:
    module = _import_file(path)
    found = {}
    for attr, obj in vars(module).items():
        if inspect.isclass(obj) and issubclass(obj, Backend) and obj.__module__ == module.__name__ \
                and isinstance(getattr(obj, "name", None), str):
            found[obj.name] = f"{Path(path).resolve()}:{attr}"
    if not found:
        raise BackendError(f"backend module {path}: defines no crossbn Backend subclass with a 'name'")
    return found


def _import_file(path: str):
    p = Path(path)
    if not p.is_file():
        raise BackendError(f"backend module {path}: no such file")
    # keyed by the resolved path: two files named mine.py are two modules
    name = "crossbn_user_backend_" + hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a user's file: say which one failed and how
        del sys.modules[name]
        raise BackendError(f"backend module {path}: import failed: {type(e).__name__}: {e}") from e
    return module


def discover(module_files: tuple[str, ...] = ()) -> dict[str, str]:
    """{backend name: spec} from entry points, then user module files (which win)."""
    specs = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for path in module_files:
        specs.update(_module_file_specs(path))
    return dict(sorted(specs.items()))


def load(spec: str) -> Backend:
    """Instantiate the backend a spec names (imports its adapter, not its framework)."""
    target, _, attr = spec.rpartition(":")
    try:
        module = _import_file(target) if target.endswith(".py") else importlib.import_module(target)
        return getattr(module, attr)()
    except BackendError:
        raise
    except Exception as e:  # a broken third-party entry point: name it, don't crash
        raise BackendError(f"backend spec {spec!r} cannot be loaded: {type(e).__name__}: {e}") from e


def resolve(names: str, specs: dict[str, str]) -> list[str]:
    """Parse a --backends value ("all", or "a,b") into known backend names."""
    if names.strip() in ("", "all"):
        return list(specs)
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in specs]
    if unknown:
        raise BackendError(
            f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(specs)}"
        )
    return list(dict.fromkeys(chosen))
