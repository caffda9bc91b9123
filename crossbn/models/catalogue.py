"""Model catalogues: `cases/<suite>.toml` files of [[model]] entries.

The format mirrors the BatchNorm catalogues (crossbn/catalogue.py), with
ModelCase fields:

    [defaults]                   # optional: field values for every entry
    batch = 8

    [[model]]
    name = "train_eval"          # required; becomes part of every pytest id
    description = "..."          # optional
    train_steps = 2              # plain keys fix a ModelCase field
    [model.axes]                 # each key lists values; the entry expands to
    network = ["residual_block", "bn_chain"]   # their product, in file order
    dtype = ["float32", "float64"]

A file with a [[model]] table is a model catalogue (`is_model_catalogue`);
crossbn/catalogue.py's load_suite hands it here, so `--suite models` works
wherever a suite name does. Cases with the same id are kept once. Every
mistake is a CatalogueError naming the file, the entry, the case (its axis
values) and the field.
"""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path

from ..catalogue import CatalogueError
from .case import FIELDS, ModelCase, ModelCaseError

_ENTRY_KEYS = {"name", "axes", "description"}


def is_model_catalogue(path: Path) -> bool:
    """True for a TOML file with [[model]] entries (a file that does not parse
    is left to the BatchNorm loader, which reports it)."""
    try:
        return "model" in tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False


def load(path: Path) -> list[ModelCase]:
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise CatalogueError(f"{where}: not valid TOML: {e}") from e
    unknown = set(data) - {"defaults", "model"}
    if unknown:
        raise CatalogueError(f"{where}: unknown top-level key(s) {sorted(unknown)} in a model catalogue; "
                             "expected defaults, [[model]]")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise CatalogueError(f"{where}: [defaults] must be a table")
    _check_fields(defaults, f"{where} [defaults]")
    entries = data["model"]
    if not isinstance(entries, list):
        raise CatalogueError(f"{where}: 'model' must be an array of tables ([[model]])")
    cases: dict[str, ModelCase] = {}
    for i, entry in enumerate(entries):
        for case in _expand(entry, defaults, Path(path).stem, f"{where} [[model]] #{i + 1}"):
            cases.setdefault(case.id, case)
    return list(cases.values())


def _check_fields(table: dict, where: str) -> None:
    unknown = set(table) - set(FIELDS)
    if unknown:
        raise CatalogueError(f"{where}: unknown field(s) {sorted(unknown)}; model case fields are {sorted(FIELDS)}")


def _expand(entry, defaults: dict, suite: str, where: str) -> list[ModelCase]:
    if not isinstance(entry, dict):
        raise CatalogueError(f"{where}: must be a table")
    name = entry.get("name")
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise CatalogueError(f"{where}: field 'name' must be a word (letters, digits, - or _), got {name!r}")
    where = f"{where} '{name}'"
    fixed = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS}
    _check_fields(fixed, where)
    axes = entry.get("axes", {})
    if not isinstance(axes, dict):
        raise CatalogueError(f"{where}: [model.axes] must be a table of lists")
    _check_fields(axes, f"{where} [axes]")
    for k, values in axes.items():
        if not isinstance(values, list) or not values:
            raise CatalogueError(f"{where} [axes]: field '{k}' must be a non-empty list of values, got {values!r}")
    out = []
    keys = list(axes)
    for combo in itertools.product(*(axes[k] for k in keys)):
        point = dict(zip(keys, combo))
        try:
            out.append(ModelCase(**{**defaults, **fixed, **point, "suite": suite, "group": name}))
        except (ModelCaseError, TypeError) as e:
            label = ", ".join(f"{k}={v!r}" for k, v in point.items()) or "the only case"
            raise CatalogueError(f"{where}, case ({label}): {e}") from e
    return out
