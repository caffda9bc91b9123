"""Known differences: findings a user has looked at and accepted, by pattern.

A TOML file (`--known FILE`, `--crossbn-known FILE`; a bare name such as `frameworks` is a built-in file of
crossbn/known/) of [[known]] entries, each a set of globs (backend, case, device, observable, verdict, dtype,
stage, formulation, version) and a required reason. Every given field must hold. `load` reads a file into `Known`
entries (a `KnownError` for a mistake), `first_match` finds a record's entry and `check` matches a run's records.
A matched failing result is reported as known (an xfail with the reason); the file is data only: nothing in it is
executed.

File format and design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

from crossbn.spec.verdicts import FAILING

_FIELDS = {
    "backend",
    "case",
    "device",
    "observable",
    "verdict",
    "dtype",
    "stage",
    "formulation",
    "version",
    "reason",
    "link",
}


class KnownError(ValueError):
    """A known-differences file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Known:
    index: int  # 1-based position in the file (how messages name it)
    backend: str
    reason: str
    case: str = "*"
    device: str = "*"
    observable: str = "*"
    verdict: str = ""
    dtype: str = "*"
    stage: str = "*"
    formulation: str = "*"
    version: str = "*"
    link: str = ""

    def matches(self, rec: dict) -> bool:
        if rec.get("verdict") not in FAILING or (self.verdict and rec["verdict"] != self.verdict):
            return False
        if not fnmatch.fnmatchcase(rec.get("backend", ""), self.backend):
            return False
        if not fnmatch.fnmatchcase(rec.get("device", ""), self.device):
            return False
        for pattern, value in (
            (self.dtype, (rec.get("case") or {}).get("dtype")),
            (self.stage, (rec.get("localization") or {}).get("stage")),
            (self.formulation, (rec.get("diagnosis") or {}).get("formulation")),
            (self.version, rec.get("version")),
        ):
            if pattern != "*" and not fnmatch.fnmatchcase(value or "", pattern):
                return False
        ids = (rec.get("pytest_id") or "", rec.get("case_id") or "")
        if not any(fnmatch.fnmatchcase(i, self.case) for i in ids if i):
            return False
        if self.observable == "*":
            return True
        failing = [n for n, o in (rec.get("observables") or {}).items() if o.get("verdict") in FAILING]
        return any(fnmatch.fnmatchcase(n, self.observable) for n in failing)

    def in_scope(self, backends, devices, dtypes, case_ids) -> bool:
        """Whether a run of these backends, devices, dtypes and cases (ids and
        pytest ids) could give this entry a finding to match: one that could
        not is not news when it matches nothing."""
        return all(
            pattern == "*" or any(fnmatch.fnmatchcase(v, pattern) for v in values)
            for pattern, values in (
                (self.backend, backends),
                (self.device, devices),
                (self.dtype, dtypes),
                (self.case, case_ids),
            )
        )

    def label(self) -> str:
        given = ", ".join(
            f"{f}={getattr(self, f)}"
            for f in ("case", "device", "dtype", "observable", "verdict", "stage", "formulation", "version")
            if getattr(self, f) not in ("*", "")
        )
        return f"#{self.index} (backend={self.backend}{', ' + given if given else ''})"


# the known-differences files that come with crossbn (package data)
BUILT_IN = Path(__file__).resolve().parents[1] / "known"


def resolve(path: str | Path) -> Path:
    """A path as given; a bare name that is no file here ("frameworks") is a built-in file."""
    p = Path(path)
    if not p.exists() and p.name == str(path) and p.suffix == "" and (BUILT_IN / f"{p}.toml").is_file():
        return BUILT_IN / f"{p}.toml"
    return p


def load(path: str | Path) -> list[Known]:
    p = resolve(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise KnownError(f"{p}: cannot read ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise KnownError(
            f"{p}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); a known-differences file is TOML"
        ) from e
    except tomllib.TOMLDecodeError as e:
        raise KnownError(f"{p}: not valid TOML ({e})") from e
    extra = set(data) - {"known"}
    if extra:
        raise KnownError(f"{p}: unknown table(s) {', '.join(sorted(extra))}; entries go in [[known]]")
    entries = data.get("known", [])
    if not isinstance(entries, list):
        raise KnownError(f"{p}: 'known' must be an array of tables ([[known]])")
    out = []
    for i, entry in enumerate(entries, 1):
        where = f"{p} [[known]] #{i}"
        if not isinstance(entry, dict):
            raise KnownError(f"{where}: not a table")
        unknown = set(entry) - _FIELDS
        if unknown:
            raise KnownError(
                f"{where}: unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_FIELDS))}"
            )
        for field in ("backend", "reason"):
            if not entry.get(field):
                raise KnownError(f"{where}: '{field}' is required")
        for field, value in entry.items():
            if not isinstance(value, str):
                raise KnownError(f"{where}: '{field}' must be a string, got {type(value).__name__}")
        if entry.get("verdict") and entry["verdict"] not in FAILING:
            raise KnownError(
                f"{where}: verdict {entry['verdict']!r} is not a finding; one of {', '.join(sorted(FAILING))}"
            )
        out.append(Known(index=i, **entry))
    return out


def first_match(entries: list[Known], rec: dict) -> Known | None:
    return next((k for k in entries if k.matches(rec)), None)


def check(entries: list[Known], records) -> tuple[dict[int, int], list[dict]]:
    """Hold finished results against a known-differences file without
    rerunning them: ({entry index: findings it matched}, the findings no
    entry matches). `crossbn known FILE RESULTS` prints it."""
    used: dict[int, int] = {}
    new = []
    for rec in records:
        if rec.get("verdict") not in FAILING:
            continue
        k = first_match(entries, rec)
        if k is None:
            new.append(rec)
        else:
            used[k.index] = used.get(k.index, 0) + 1
    return used, new


def group_key(rec: dict) -> tuple[str, ...]:
    """What an entry would be written for: backend, verdict, dtype, stage, fingerprint."""
    return (
        rec.get("backend", ""),
        rec.get("verdict", ""),
        (rec.get("case") or {}).get("dtype", ""),
        (rec.get("localization") or {}).get("stage") or "",
        (rec.get("diagnosis") or {}).get("formulation") or "",
    )
