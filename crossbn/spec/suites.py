"""A suite by name or path, loaded by the catalogue reader it is written for:
BatchNorm cases (catalogue.py) or networks (network_catalogue.py)."""

from __future__ import annotations

from crossbn.spec.catalogue import CatalogueError, load_cases, suite_path
from crossbn.spec.network_catalogue import is_model_catalogue, load as load_models


def load_suite(suite: str) -> list:
    """The suite's `Case`s, or its `ModelCase`s for a model catalogue."""
    path = suite_path(suite)
    cases = load_models(path) if path.is_file() and is_model_catalogue(path) else load_cases(path)
    if not cases:  # pytest would run nothing and call it a pass
        raise CatalogueError(f"{path}: no cases (an empty catalogue)")
    return cases
