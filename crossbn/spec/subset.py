"""The stratified subset a compiled backend runs of a suite.

A compiled backend (torch.compile, XLA, jax.jit) pays a compilation for
nearly every case (0.6 s for an XLA trace or a dynamo export, 2-19 s
for Inductor, on a CPU), so it cannot run all of `default`
in the main job. It runs a subset that still represents every group and
every dtype: from each (group, dtype) stratum of the suite the K cases
with the smallest ids (ids are content hashes, so this is a deterministic,
unbiased draw, and the same cases for every compiled backend: they can be
compared with each other and with their eager twins case by case). A suite
of at most WHOLE cases (smoke) runs whole. CROSSBN_COMPILED_SUBSET=K
changes K; =all runs every case.
"""

from __future__ import annotations

import os
from collections import defaultdict

ENV = "CROSSBN_COMPILED_SUBSET"
WHOLE = 40  # a suite this small is compiled whole
PER_STRATUM = 2  # K: what every compiled backend sets as its `Backend.subset`


def size(default: int) -> int | None:
    """K from the environment (None: every case), else `default`."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return default
    if raw == "all":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{ENV}={raw!r}: must be a whole number >= 1 (cases per group and dtype), or all")
    return int(raw)


def stratified(cases, k: int | None) -> frozenset[str] | None:
    """The ids of the subset (None: every case)."""
    if k is None or len(cases) <= WHOLE:
        return None
    strata: dict[tuple, list[str]] = defaultdict(list)
    for case in cases:
        strata[(case.group, case.dtype)].append(case.id)
    return frozenset(i for ids in strata.values() for i in sorted(set(ids))[:k])


def reason(name: str, k: int) -> str:
    return (
        f"outside {name}'s stratified subset ({k} case(s) per group and dtype, to bound compile time; "
        f"{ENV}=all runs every case)"
    )
