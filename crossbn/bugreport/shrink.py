"""Minimize a case while its finding persists, with Hypothesis's shrinker.

`shrink(case, holds, budget)` redraws the case from a strategy of "smaller versions of the original" and returns
the smallest one the predicate `holds` still holds for. The original is handed to Hypothesis as the first example
to replay, through an in-memory example database: the one place crossbn leans on how Hypothesis keeps examples
(`hypothesis.database.choices_to_bytes`, pinned in constraints.txt).

Design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import dataclasses
import time

import hypothesis.core as hypothesis_core
from hypothesis import HealthCheck, Phase, find, settings, strategies as st
from hypothesis.database import InMemoryExampleDatabase, choices_to_bytes
from hypothesis.errors import NoSuchExample

from crossbn.spec.case import Case, CaseError

_KEY = b"crossbn-shrink"


class _OutOfBudget(Exception):
    pass


def _plan(case: Case) -> list[tuple[str, object, object]]:
    """The draws, in order: (name, strategy, the original's choice)."""
    n, c, *spatial = case.shape
    plan = [
        ("train_steps", st.integers(0, case.train_steps), case.train_steps),
        ("batch", st.integers(min(1, n), n), n),  # an empty batch stays empty
        ("channels", st.integers(1, c), c),
    ]
    plan += [(f"size{i}", st.integers(1, s), s) for i, s in enumerate(spatial)]
    plan.append(("spatial_dims", st.integers(0, len(spatial)), len(spatial)))
    keep = [
        ("eval_step", case.eval_step),
        ("gradients", case.gradients),
        ("affine", case.affine),
        ("channels_last", case.layout == "channels_last" and case.rank > 2),
        ("distribution", case.distribution != "normal"),
        ("scale", case.scale != 1.0),
        ("offset_ratio", case.offset_ratio != 0.0),
        ("cumulative", case.cumulative),
    ]
    plan += [(f"keep_{name}", st.booleans(), True) for name, on in keep if on]
    plan.append(("seed", st.integers(0, case.seed), case.seed))
    plan += [(f"keep_special{i}", st.booleans(), True) for i in range(len(case.specials))]
    return plan


def _build(case: Case, d: dict) -> Case | None:
    """The smaller case the draws `d` describe, or None when they describe none."""
    n, c, *spatial = case.shape
    sizes = [d[f"size{i}"] for i in range(len(spatial))][: d["spatial_dims"]]
    shape = (d["batch"], d["channels"], *sizes)
    steps = d["train_steps"] + (1 if d.get("keep_eval_step") else 0)
    specials = []
    for i, (value, step, index) in enumerate(case.specials):
        # a planted value moves with the shrinking case: into its shape, into its last step
        index = tuple(min(k, size - 1) for k, size in zip(index[: 2 + len(sizes)], shape))
        if d.get(f"keep_special{i}") and steps:
            specials.append((value, min(step, steps - 1), index))
    fields = dict(
        shape=shape,
        train_steps=d["train_steps"],
        eval_step=bool(d.get("keep_eval_step")),
        gradients=bool(d.get("keep_gradients")),
        affine=bool(d.get("keep_affine")),
        layout="channels_last" if d.get("keep_channels_last") else "channels_first",
        distribution=case.distribution if d.get("keep_distribution") else "normal",
        scale=case.scale if d.get("keep_scale") else 1.0,
        offset_ratio=case.offset_ratio if d.get("keep_offset_ratio") else 0.0,
        cumulative=bool(d.get("keep_cumulative")),
        seed=d["seed"],
        specials=tuple(specials),
        group=f"{case.group}_min",
    )
    try:
        return dataclasses.replace(case, **fields)
    except CaseError:  # e.g. no training step and no eval step
        return None


def shrink(case: Case, holds, budget: float, max_examples: int = 500) -> tuple[Case, int]:
    """The smallest case Hypothesis finds for which `holds(case)` is true,
    starting from `case` (for which it must hold), within `budget` seconds;
    and how many cases were tried. On running out of time, the smallest found
    so far."""
    plan = _plan(case)
    seed_choices = [original for _, _, original in plan]
    database = InMemoryExampleDatabase()
    database.save(_KEY + b".secondary", choices_to_bytes(seed_choices))
    best = [case]
    tried = [0]
    deadline = time.monotonic() + budget

    def condition(candidate):
        if candidate is None:
            return False
        if candidate.id == case.id:  # the original: known to hold
            return True
        if time.monotonic() > deadline:
            raise _OutOfBudget
        tried[0] += 1
        if not holds(candidate):
            return False
        if _size(candidate) < _size(best[0]):
            best[0] = candidate
        return True

    conf = settings(
        database=database,
        max_examples=max_examples,
        deadline=None,
        phases=[Phase.reuse, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    # The same shrink on every run: Hypothesis's own seed (what pytest's
    # --hypothesis-seed sets; find(random=...) would turn the database off).
    saved, hypothesis_core.global_force_seed = hypothesis_core.global_force_seed, 0
    try:
        found = find(
            _tuples(plan).map(lambda v: _build(case, {n: x for (n, _, _), x in zip(plan, v)})),
            condition,
            settings=conf,
            database_key=_KEY,
        )
    except (_OutOfBudget, NoSuchExample):
        found = best[0]
    finally:
        hypothesis_core.global_force_seed = saved
    return (found if _size(found) <= _size(best[0]) else best[0]), tried[0]


def _tuples(plan):
    return st.tuples(*(s for _, s, _ in plan))


def _size(case: Case) -> tuple:
    """Smaller is simpler: elements per step, then steps, then the rest."""
    import math

    return (math.prod(case.shape), len(case.steps), case.rank, case.gradients, case.affine, case.seed)
