"""The README's backend table, generated from what each backend declares.

`crossbn backends --markdown` prints it; a test keeps README.md's copy (between
the `backends-table` markers) equal to it, so the documentation cannot drift
from the declarations the comparisons use.
"""

from __future__ import annotations

from crossbn.backends import discover, load
from crossbn.backends.base import CANONICAL_CONVENTIONS, CONVENTION_KEYS

BEGIN, END = "<!-- backends-table:begin -->", "<!-- backends-table:end -->"
_DTYPE = {"float64": "f64", "float32": "f32", "float16": "f16", "bfloat16": "bf16"}


def markdown(module_files: tuple[str, ...] = ()) -> str:
    rows = [
        "| backend | framework | devices | dtypes | momentum weighs | running var | eps, momentum "
        "| default eps | channel axis | frozen layer | gradients | documented at |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, spec in discover(module_files).items():
        b = load(spec)
        missing = set(CONVENTION_KEYS) - set(b.conventions) - set(CANONICAL_CONVENTIONS)
        if missing:
            raise ValueError(f"backend {name} does not declare {sorted(missing)} in its conventions")
        c = {k: getattr(b.declared, k) for k in CONVENTION_KEYS}
        gradients = "no" if b.no_gradients else "yes"
        frozen = "none" if b.no_frozen else b.convention("frozen")  # none: no way to freeze (unsupported)
        rows.append(
            f"| `{name}` | {b.packages[0] if b.packages else ''} | {', '.join(b.devices)} "
            f"| {' '.join(_DTYPE[d] for d in b.dtypes)} | {c['momentum']} | {c['running_var']} | {c['hyperparameters']} "
            f"| {c['default_eps']} | {c['channel_axis']} | {frozen} | {gradients} | [docs]({c['doc']}) |"
        )
    return "\n".join(rows)


def readme_block(readme_text: str) -> str:
    """The table as README.md currently has it (between the markers)."""
    start, end = readme_text.index(BEGIN) + len(BEGIN), readme_text.index(END)
    return readme_text[start:end].strip()
