"""The backend registry.

Backends are found through the `crossbn.backends` entry-point group — the
built-in ones are registered there in pyproject.toml exactly as a user's
package would register its own — and through module files named on the
command line (`--crossbn-backend-module path/to/mine.py`), whose `Backend`
subclasses with a `name` are added. A spec is "module:Class" or
"/path/file.py:Class"; worker processes rebuild a backend from its spec.

A backend may run under another Python interpreter (another virtual
environment with another release of its framework): `torch@/venv/bin/python`
in --backends. Such a backend is named `torch@LABEL` in ids and records, the
label taken from the environment's folder (or given: `torch@old=/venv/bin/python`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from crossbn.backends.base import OBSERVABLES, Backend, ConventionError, Conventions, Unsupported

__all__ = [
    "Backend",
    "Conventions",
    "ConventionError",
    "Unsupported",
    "OBSERVABLES",
    "BackendError",
    "Choice",
    "choose",
    "discover",
    "load",
    "resolve",
    "instantiate",
]

ENTRY_POINT_GROUP = "crossbn.backends"


class BackendError(ValueError):
    """An unknown backend name or a backend module that cannot be loaded."""


def _module_file_specs(path: str) -> dict[str, str]:
    module = import_file(path)
    found = {}
    for attr, obj in vars(module).items():
        if (
            inspect.isclass(obj)
            and issubclass(obj, Backend)
            and obj.__module__ == module.__name__
            and isinstance(getattr(obj, "name", None), str)
        ):
            found[obj.name] = f"{Path(path).resolve()}:{attr}"
    if not found:
        raise BackendError(f"backend module {path}: defines no crossbn Backend subclass with a 'name'")
    return found


def import_file(path: str):
    p = Path(path)
    if not p.is_file():
        raise BackendError(
            f"backend module {path}: {'not a file' if p.exists() else 'no such file'} "
            "(give a Python file that defines a crossbn Backend subclass)"
        )
    # keyed by the resolved path: two files named mine.py are two modules
    name = "crossbn_user_backend_" + hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    # A user's file: say which one failed and how. SystemExit too: a script
    # that parses its arguments at import would end crossbn with its own usage.
    except (Exception, SystemExit) as e:
        del sys.modules[name]
        raise BackendError(f"backend module {path}: import failed: {type(e).__name__}: {e}{_raised_at(e, p)}") from e
    return module


def _raised_at(e: BaseException, file: Path) -> str:
    """ " (raised at FILE:N)", the last line of the user's file the exception
    passed through; "" when none (a SyntaxError names its own line)."""
    import traceback

    target = file.resolve()
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).resolve() == target]
    return f" (raised at {file}:{lines[-1]})" if lines else ""


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
        module = import_file(target) if target.endswith(".py") else importlib.import_module(target)
        backend = getattr(module, attr)()
        _ = backend.declared  # its conventions checked now: a wrong one is a usage error, before any work
        return backend
    except BackendError:
        raise
    except ConventionError as e:
        raise BackendError(f"backend spec {spec!r}: {e}") from e
    except Exception as e:  # a broken third-party entry point: name it, don't crash
        raise BackendError(f"backend spec {spec!r} cannot be loaded: {type(e).__name__}: {e}") from e


@dataclass(frozen=True)
class Choice:
    """One backend of a run, as --backends named it."""

    name: str  # in ids and records: "torch", or "torch@LABEL" under another interpreter
    base: str  # the registered backend: "torch"
    interpreter: str | None  # the other Python its worker runs under, or None (this one)


# Folder names that say nothing about which environment they are: the label
# is taken from the folder above them (/work/torch-2.12/.venv/bin/python -> torch-2.12).
_GENERIC = {"bin", "Scripts", ".venv", "venv", "env", ".env", "virtualenv", "python", "usr", "local"}
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def _interpreter(item: str, base: str, path: str) -> str:
    found = shutil.which(path) if os.sep not in path else (path if os.path.isfile(path) else None)
    if not found or not os.access(found, os.X_OK):
        raise BackendError(
            f"{item}: no Python interpreter at {path!r} (give the path of the other "
            f"environment's python, e.g. torch@/path/to/venv/bin/python)"
        )
    return os.path.abspath(found)


def _label(path: str) -> str:
    p = Path(path)
    for part in reversed(p.parent.parts):
        if part not in _GENERIC and part not in (os.sep, ""):
            return re.sub(r"[^A-Za-z0-9._+-]", "-", part).strip("-.") or p.name
    return p.name


def choose(names: str, specs: dict[str, str]) -> list[Choice]:
    """Parse a --backends value: "all", or "a,b", where an item may be
    "name@/path/to/python" or "name@label=/path/to/python"."""
    if names.strip() in ("", "all"):
        return [Choice(n, n, None) for n in specs]
    chosen, unknown = [], []
    for item in (n.strip() for n in names.split(",")):
        if not item:
            continue
        base, at, where = item.partition("@")
        if base not in specs:
            unknown.append(base)
            continue
        if not at:
            chosen.append(Choice(base, base, None))
            continue
        label, eq, path = where.partition("=")
        if not eq:
            label, path = "", where
        elif not _LABEL.fullmatch(label):
            raise BackendError(
                f"{item}: label {label!r} must be letters, digits and . _ + - (e.g. torch@old=/venv/bin/python)"
            )
        if not path:
            raise BackendError(f"{item}: no interpreter after '@' (e.g. {base}@/path/to/venv/bin/python)")
        path = _interpreter(item, base, path)
        chosen.append(Choice(f"{base}@{label or _label(path)}", base, path))
    if unknown:
        raise BackendError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(specs)}")
    if not chosen:  # "," or " , ": a value that names nothing is a mistake, not an empty run
        raise BackendError(f"{names!r} names no backend; known: {', '.join(specs)} (or all)")
    seen: dict[str, Choice] = {}
    for c in chosen:
        if c.name in seen and seen[c.name] != c:
            raise BackendError(
                f"two backends would both be named {c.name} ({seen[c.name].interpreter} and "
                f"{c.interpreter}); label them: {c.base}@LABEL=/path/to/python"
            )
        seen[c.name] = c
    return list(seen.values())


def resolve(names: str, specs: dict[str, str]) -> list[str]:
    """The names of a --backends value (see `choose`)."""
    return [c.name for c in choose(names, specs)]


def instantiate(choices: list[Choice], specs: dict[str, str]) -> tuple[dict[str, str], dict[str, Backend]]:
    """({name: spec}, {name: backend}) for a run's choices. A backend under
    another interpreter is told so (`interpreter`), and the one it is compared
    with (`compare_with`): the first-named of its framework in the run."""
    first: dict[str, str] = {}
    run_specs, backends = {}, {}
    for c in choices:
        first.setdefault(c.base, c.name)
    for c in choices:
        run_specs[c.name] = specs[c.base]
        backends[c.name] = b = load(specs[c.base])
        b.interpreter = c.interpreter
        b.compare_with = first[c.base] if first[c.base] != c.name else None
    return run_specs, backends
