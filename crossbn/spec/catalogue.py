"""Case catalogues: `crossbn/cases/<suite>.toml` files expanded into `Case`s.

A catalogue is data (TOML: optional `include` and [defaults], then [[group]] tables whose [group.axes] expand to
their cartesian product), read with the standard library's tomllib. `suite_path` finds a suite's file,
`load_cases` expands it; cases with the same id are kept once, first occurrence wins. Every mistake is a
`CatalogueError` naming the file, the group, the case (its axis values) and the field. A file of [[model]]
entries is a model catalogue (spec/network_catalogue.py).

File format and design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from pathlib import Path

from crossbn.spec.case import Case, CaseError

# the built-in catalogues (package data)
CASES_DIR = Path(__file__).resolve().parents[1] / "cases"
_FIELDS = {f.name for f in dataclasses.fields(Case) if f.init} - {"suite", "group"}
_GROUP_KEYS = {"name", "axes", "description"}


class CatalogueError(ValueError):
    """A malformed catalogue; the message says where."""


def suite_path(suite: str) -> Path:
    """A suite name ("default"), a path to a .toml file, or a folder of them
    (crossbn/cases/found/: one file per case `crossbn fuzz` saved)."""
    p = Path(suite)
    if p.suffix == ".toml":
        if not p.is_file():
            raise CatalogueError(f"{p}: catalogue file not found")
        return p
    if (CASES_DIR / suite).is_dir():
        return CASES_DIR / suite
    p = CASES_DIR / f"{suite}.toml"
    if not p.is_file():
        raise CatalogueError(f"unknown suite {suite!r}: no {p}; known suites: {', '.join(available_suites())}")
    return p


def available_suites() -> list[str]:
    return sorted([q.stem for q in CASES_DIR.glob("*.toml")] + [q.name for q in CASES_DIR.iterdir() if q.is_dir()])


def load_cases(path: Path) -> list[Case]:
    """The `Case`s of a catalogue file, or of a folder of them."""
    cases: dict[str, Case] = {}
    _load(path, cases, seen=())
    return list(cases.values())


def _load(path: Path, cases: dict[str, Case], seen: tuple[Path, ...]) -> None:
    if path.is_dir():
        for file in sorted(path.glob("*.toml")):
            _load(file, cases, seen)
        return
    where = str(path)
    if path.resolve() in seen:
        raise CatalogueError(f"{where}: include cycle through {' -> '.join(map(str, seen))}")
    data = read_toml(path)
    unknown = set(data) - {"include", "defaults", "group"}
    if unknown:
        raise CatalogueError(
            f"{where}: unknown top-level key(s) {sorted(unknown)}; expected include, defaults, [[group]]"
        )
    for inc in _as_list(data.get("include", []), f"{where}: 'include'"):
        _load(_include(path, inc), cases, seen + (path.resolve(),))
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise CatalogueError(f"{where}: [defaults] must be a table")
    check_fields(defaults, f"{where} [defaults]")
    groups = data.get("group", [])
    if not isinstance(groups, list):
        raise CatalogueError(f"{where}: 'group' must be an array of tables ([[group]])")
    for gi, group in enumerate(groups):
        for case in _expand(group, defaults, path.stem, f"{where} group #{gi + 1}"):
            cases.setdefault(case.id, case)


def read_toml(path: Path) -> dict:
    """The parsed file, or a CatalogueError naming it: unreadable, not UTF-8
    (TOML is UTF-8 by definition), or not TOML (tomllib gives line and column)."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        raise CatalogueError(f"{path}: cannot read ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise CatalogueError(
            f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); a catalogue is a TOML file"
        ) from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CatalogueError(f"{path}: not valid TOML: {e}") from e


def _include(path: Path, inc) -> Path:
    """What an `include` entry names: a .toml file beside `path`, or a suite.
    Errors name the including file, which is where the mistake is."""
    where = f"{path}: include {inc!r}"
    if not isinstance(inc, str) or not inc:
        raise CatalogueError(f"{where}: must be a suite name or a .toml file name (a string)")
    if inc.endswith(".toml"):
        target = path.parent / inc
        if not target.is_file():
            raise CatalogueError(f"{where}: no file {target}")
        return target
    try:
        return suite_path(inc)
    except CatalogueError as e:
        raise CatalogueError(f"{where}: {e}") from e


def _as_list(value, where: str) -> list:
    if not isinstance(value, list):
        raise CatalogueError(f"{where} must be a list, got {value!r}")
    return value


def check_fields(table: dict, where: str, fields=_FIELDS, kind: str = "Case") -> None:
    unknown = set(table) - set(fields)
    if unknown:
        raise CatalogueError(f"{where}: unknown field(s) {sorted(unknown)}; {kind} fields are {sorted(fields)}")


def _expand(group, defaults: dict, suite: str, where: str) -> list[Case]:
    return expand_entry(group, defaults, suite, where, make=Case.from_dict, errors=(CaseError,))


def expand_entry(
    entry,
    defaults: dict,
    suite: str,
    where: str,
    *,
    make,
    errors: tuple,
    fields=_FIELDS,
    kind: str = "Case",
    table: str = "group",
) -> list:
    """One [[group]] (or [[model]]) entry -> its cases: the cartesian product
    of its [axes] over its fixed fields and the defaults, each built by
    `make(fields)`; a field that `make` rejects (raising one of `errors`) is
    a CatalogueError naming the entry and the case."""
    if not isinstance(entry, dict):
        raise CatalogueError(f"{where}: must be a table")
    name = entry.get("name")
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise CatalogueError(f"{where}: field 'name' must be a word (letters, digits, - or _), got {name!r}")
    where = f"{where} '{name}'"
    if not isinstance(entry.get("description", ""), str):
        raise CatalogueError(f"{where}: field 'description' must be a string, got {entry['description']!r}")
    fixed = {k: v for k, v in entry.items() if k not in _GROUP_KEYS}
    check_fields(fixed, where, fields, kind)
    axes = entry.get("axes", {})
    if not isinstance(axes, dict):
        raise CatalogueError(f"{where}: [{table}.axes] must be a table of lists")
    check_fields(axes, f"{where} [axes]", fields, kind)
    for k, values in axes.items():
        if not isinstance(values, list) or not values:
            raise CatalogueError(f"{where} [axes]: field '{k}' must be a non-empty list of values, got {values!r}")
    out = []
    keys = list(axes)
    for combo in itertools.product(*(axes[k] for k in keys)):
        point = dict(zip(keys, combo))
        try:
            out.append(make({**defaults, **fixed, **point, "suite": suite, "group": name}))
        except (*errors, TypeError) as e:
            label = ", ".join(f"{k}={v!r}" for k, v in point.items()) or "the only case"
            raise CatalogueError(f"{where}, case ({label}): {e}") from e
    return out
