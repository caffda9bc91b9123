"""Known differences: findings a user has looked at and accepted, by pattern.

A TOML file (`--known FILE`, `--crossbn-known FILE`) of entries:

    [[known]]
    backend = "keras-torch"        # required; a glob (fnmatch) on the backend name
    case = "*offset*"              # glob on the test's case id (pytest id) or case hash; default "*"
    device = "cpu"                 # glob; default "*"
    observable = "*.batch_var"     # glob one of the result's failing observables must match; default "*"
    verdict = "deviation"          # the verdict it must have (deviation, nan-mismatch, error, crash, timeout); default any
    reason = "one-pass variance (keras/src/backend/torch/nn.py: moments)"   # required
    link = "https://github.com/..." # optional

A failing result that an entry matches is reported as known: the pytest
outcome is an xfail with the reason (a skip with --crossbn-known-skip), the
record keeps `known: {entry, reason, link}`, and the report splits known
from new findings. Entries that match nothing in a run are listed at its
end, so a fixed bug's entry does not linger. The file is data only: nothing
in it is executed.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .compare import FAILING

_FIELDS = {"backend", "case", "device", "observable", "verdict", "reason", "link"}


class KnownError(ValueError):
    """A known-differences file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Known:
    index: int           # 1-based position in the file (how messages name it)
    backend: str
    reason: str
    case: str = "*"
    device: str = "*"
    observable: str = "*"
    verdict: str = ""
    link: str = ""

    def matches(self, rec: dict) -> bool:
        if rec.get("verdict") not in FAILING or (self.verdict and rec["verdict"] != self.verdict):
            return False
        if not fnmatch.fnmatchcase(rec.get("backend", ""), self.backend):
            return False
        if not fnmatch.fnmatchcase(rec.get("device", ""), self.device):
            return False
        ids = (rec.get("pytest_id") or "", rec.get("case_id") or "")
        if not any(fnmatch.fnmatchcase(i, self.case) for i in ids if i):
            return False
        if self.observable == "*":
            return True
        failing = [n for n, o in (rec.get("observables") or {}).items() if o.get("verdict") in FAILING]
        return any(fnmatch.fnmatchcase(n, self.observable) for n in failing)

    def label(self) -> str:
        return f"#{self.index} (backend={self.backend}, case={self.case}, observable={self.observable})"


def load(path: str | Path) -> list[Known]:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise KnownError(f"{p}: cannot read ({e.strerror})") from e
    except tomllib.TOMLDecodeError as e:
        raise KnownError(f"{p}: not valid TOML ({e})") from e
    extra = set(data) - {"known"}
    if extra:
        raise KnownError(f"{p}: unknown table(s) {', '.join(sorted(extra))}; entries go in [[known]]")
    entries = data.get("known", [])
    if not isinstance(entries, list):
        raise KnownError(f"{p}: 'known' must be an array of tables ([[known]])")
    out = []
    for i, e in enumerate(entries, 1):
        where = f"{p} [[known]] #{i}"
        if not isinstance(e, dict):
            raise KnownError(f"{where}: not a table")
        unknown = set(e) - _FIELDS
        if unknown:
            raise KnownError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(sorted(_FIELDS))}")
        for field in ("backend", "reason"):
            if not e.get(field):
                raise KnownError(f"{where}: '{field}' is required")
        for field, value in e.items():
            if not isinstance(value, str):
                raise KnownError(f"{where}: '{field}' must be a string, got {type(value).__name__}")
        if e.get("verdict") and e["verdict"] not in FAILING:
            raise KnownError(f"{where}: verdict {e['verdict']!r} is not a finding; one of "
                             f"{', '.join(sorted(FAILING))}")
        out.append(Known(index=i, **e))
    return out


def first_match(entries: list[Known], rec: dict) -> Known | None:
    return next((k for k in entries if k.matches(rec)), None)
