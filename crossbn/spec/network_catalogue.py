"""Model catalogues: `crossbn/cases/<suite>.toml` files of [[model]] entries.

The format mirrors the BatchNorm catalogues (crossbn/spec/catalogue.py), with ModelCase fields and
[model.axes] in place of [group.axes]. `is_model_catalogue` tells a model catalogue from a BatchNorm one,
`load` expands it into `ModelCase`s, so `--suite models` works wherever a suite name does. Every mistake is a
CatalogueError naming the file, the entry, the case (its axis values) and the field.

File format and design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from crossbn.spec.catalogue import CatalogueError, check_fields, expand_entry, read_toml
from crossbn.spec.network_case import FIELDS, ModelCase, ModelCaseError


def is_model_catalogue(path: Path) -> bool:
    """True for a TOML file with [[model]] entries (a file that does not parse
    is left to the BatchNorm loader, which reports it)."""
    try:
        return "model" in tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: not UTF-8 (UnicodeDecodeError), not TOML
        return False


def load(path: Path) -> list[ModelCase]:
    where = str(path)
    data = read_toml(path)
    unknown = set(data) - {"defaults", "model"}
    if unknown:
        raise CatalogueError(
            f"{where}: unknown top-level key(s) {sorted(unknown)} in a model catalogue; expected defaults, [[model]]"
        )
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise CatalogueError(f"{where}: [defaults] must be a table")
    check_fields(defaults, f"{where} [defaults]", FIELDS, "model case")
    entries = data.get("model")
    if not isinstance(entries, list):
        raise CatalogueError(f"{where}: 'model' must be an array of tables ([[model]])")
    cases: dict[str, ModelCase] = {}
    for i, entry in enumerate(entries):
        for case in expand_entry(
            entry,
            defaults,
            Path(path).stem,
            f"{where} [[model]] #{i + 1}",
            make=lambda d: ModelCase(**d),
            errors=(ModelCaseError,),
            fields=FIELDS,
            kind="model case",
            table="model",
        ):
            cases.setdefault(case.id, case)
    return list(cases.values())
