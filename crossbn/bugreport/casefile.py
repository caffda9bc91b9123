"""A case as a one-group TOML catalogue (`case.toml`, `crossbn/cases/found/*.toml`).

The standard library reads TOML but does not write it; a case holds only
numbers, strings, booleans, lists and one table of switches, so writing it
is a few lines. The output is read back by crossbn/spec/catalogue.py like any
other catalogue, and tests/test_repro.py checks the round trip.
"""

from __future__ import annotations

import json
import math

# The fields written, in the order a reader wants them (suite and group are the file's).
FIELDS = (
    "shape",
    "layout",
    "dtype",
    "eps",
    "momentum",
    "cumulative",
    "affine",
    "track_running_stats",
    "frozen",
    "train_steps",
    "eval_step",
    "gradients",
    "distribution",
    "scale",
    "offset_ratio",
    "specials",
    "running_stats",
    "seed",
)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"a case field is {v!r}: not a finite number")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is a JSON string for these characters
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as TOML")


def group_toml(case, name: str, comment: str = "") -> str:
    """One [[group]] whose only case is `case` (same content, same id)."""
    lines = [f"# {line}" for line in comment.splitlines()] if comment else []
    lines += ["[[group]]", f"name = {_value(name)}"]
    for field in FIELDS:
        lines.append(f"{field} = {_value(getattr(case, field))}")
    if case.options:
        lines.append("options = { " + ", ".join(f"{_value(k)} = {_value(v)}" for k, v in case.options) + " }")
    return "\n".join(lines) + "\n"
