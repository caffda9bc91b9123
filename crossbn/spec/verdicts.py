"""The verdicts a result can have, their severity order, and which fail.

A `Verdict` is a `StrEnum`: its values are the strings results files hold,
and a member equals (and hashes as) its string, so records read back from
JSON compare with members directly. Records themselves hold the plain
strings (`Verdict.X.value`): they cross processes. docs/error-model.md says what each one
means and which part of crossbn decides it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Verdict(StrEnum):
    UNSUPPORTED = "unsupported"
    MATCH = "match"
    CONVENTION = "convention"
    DEVIATION = "deviation"
    NAN_MISMATCH = "nan-mismatch"
    ERROR = "error"
    TIMEOUT = "timeout"
    CRASH = "crash"


# Severity order, mildest first: a result's verdict is its worst observable's.
SEVERITY: tuple[Verdict, ...] = tuple(Verdict)
FAILING: frozenset[Verdict] = frozenset(
    {Verdict.DEVIATION, Verdict.NAN_MISMATCH, Verdict.ERROR, Verdict.TIMEOUT, Verdict.CRASH}
)
# Why an element has no finite bound (oracle/tolerance.py: 0*inf conditioning,
# or a sum past the compute dtype's range).
UNJUDGED = "beyond the error model (ill-conditioned, or its statistics past the compute dtype's range)"


def worst(verdicts: Iterable[str]) -> str:
    """The most severe of `verdicts` (match for none), as the plain string a
    record holds: records cross processes (execnet serializes builtins only)."""
    return Verdict(max(verdicts, key=SEVERITY.index, default=Verdict.MATCH)).value
