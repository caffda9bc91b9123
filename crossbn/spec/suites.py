"""A suite by name or path, loaded by the catalogue reader it is written for:
BatchNorm cases (catalogue.py) or networks (network_catalogue.py)."""

from __future__ import annotations

from crossbn.spec.catalogue import load_cases, suite_path
from crossbn.spec.network_catalogue import is_model_catalogue, load as load_models


def load_suite(suite: str) -> list:
    """The suite's `Case`s, or its `ModelCase`s for a model catalogue."""
    path = suite_path(suite)
    if path.is_file() and is_model_catalogue(path):
        return load_models(path)
    return load_cases(path)
