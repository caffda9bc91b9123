"""crossbn's cache: what a rerun on unchanged releases would compute again.

One folder (`--crossbn-cache DIR`; default $XDG_CACHE_HOME/crossbn or ~/.cache/crossbn; `off`, or
`crossbn run --no-cache`: none) holds judgements/ (`Judgements`: one file per result, keyed by everything it was
computed from, `key`), jax/ and inductor/ (the frameworks' compilation caches, `compiler_env`). `info` and `clear`
back `crossbn cache`. The cache is never needed for a right answer: a missing or unreadable entry is computed.

Design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zlib
from pathlib import Path

SCHEMA = 2  # 2: diagnoses carry `confidence` (crossbn/verdict/confidence.py)
# What a record keeps of the run that made it, not of its judgement: a hit
# takes these from the run at hand.
FRESH = ("seconds", "backend_seconds", "timings", "backend_info", "worker", "time")
_PARTS = ("judgements", "jax", "inductor")


class CacheWarning(UserWarning):
    """An unreadable cache entry (ignored, recomputed)."""


def default_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "crossbn"


def resolve(value: str | None) -> Path | None:
    """The `--crossbn-cache` value as a folder, or None for `off`."""
    if value in (None, "", "auto"):
        return default_root()
    if value.lower() in ("off", "0", "none", "no"):
        return None
    return Path(value).expanduser()


def compiler_env(root: Path) -> dict[str, str]:
    """Environment that puts the frameworks' own compilation caches under
    `root` (inherited by every worker process a run starts)."""
    return {
        "JAX_COMPILATION_CACHE_DIR": str(root / "jax"),
        # every compilation, not only those over JAX's default second:
        # eager JAX compiles each primitive for each shape
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"),
    }


def source_digest() -> str:
    """A digest of crossbn's and the oracle's source: a judgement made by
    other code is not reused."""
    global _SOURCE
    if _SOURCE is None:
        package = Path(__file__).resolve().parents[1]  # crossbn/, the oracle included
        h = hashlib.sha256()
        for path in sorted(package.rglob("*.py")):
            h.update(str(path.relative_to(package)).encode())
            h.update(path.read_bytes())
        _SOURCE = h.hexdigest()[:16]
    return _SOURCE


_SOURCE: str | None = None


def key(*, case, backend: str, device: str, description: dict, mode: str, inputs: dict, outputs: dict) -> str:
    payload = json.dumps(
        [SCHEMA, source_digest(), case.to_dict(), backend, device, description, mode, inputs, outputs],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class Judgements:
    """The judgements/ part: get, put, and what `crossbn cache info` counts."""

    def __init__(self, root: Path):
        self.root = root
        self.folder = root / "judgements"
        self.hits = self.misses = 0

    def _path(self, k: str) -> Path:
        return self.folder / k[:2] / f"{k}.json.gz"

    def get(self, k: str) -> dict | None:
        path = self._path(k)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.misses += 1
            return None
        except OSError as e:
            return self._corrupt(path, f"cannot be read ({e})")
        try:
            entry = json.loads(gzip.decompress(data))
            if (
                not isinstance(entry, dict)
                or entry.get("schema") != SCHEMA
                or not isinstance(entry.get("record"), dict)
            ):
                raise ValueError(f"not a crossbn cache entry of schema {SCHEMA}")
        except (ValueError, EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            return self._corrupt(path, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}")
        self.hits += 1
        return entry

    def _corrupt(self, path: Path, why: str) -> dict | None:
        """None (a miss), with a warning that names the file and what is wrong with it."""
        warnings.warn(f"crossbn cache: ignoring {path}: {why}; judged afresh", CacheWarning, stacklevel=3)
        self.misses += 1
        return None

    def put(self, k: str, record: dict, **extra) -> None:
        """Written whole or not at all (a temporary file renamed), so a run
        killed mid-write leaves no half entry; a full disk loses only the entry."""
        entry = {"schema": SCHEMA, "record": {f: v for f, v in record.items() if f not in FRESH}, **extra}
        path = self._path(k)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json.gz")
            with os.fdopen(fd, "wb") as f:
                f.write(gzip.compress(json.dumps(entry).encode(), compresslevel=1))
            os.replace(tmp, path)
        except OSError as e:
            warnings.warn(f"crossbn cache: could not write {path}: {e}", CacheWarning, stacklevel=2)


def info(root: Path) -> list[tuple[str, int, int]]:
    """(part, files, bytes) for each part of the cache under `root`."""
    rows = []
    for part in _PARTS:
        files = size = 0
        folder = root / part
        if folder.is_dir():
            for path in folder.rglob("*"):
                if path.is_file():
                    files += 1
                    size += path.stat().st_size
        rows.append((part, files, size))
    return rows


def clear(root: Path) -> None:
    for part in _PARTS:
        shutil.rmtree(root / part, ignore_errors=True)
