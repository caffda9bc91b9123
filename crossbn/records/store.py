"""A run folder's result files: written so that a kill loses nothing finished.

Every process appends its records to its own part file, `results-<worker>.jsonl` (`ResultWriter`), one whole
line per write. The controller mirrors the parts into `results.jsonl` as the run goes (`LiveResults`), and at the
end `merge` rewrites it sorted by (case id, backend, device). A kill can leave only a torn last line, which
readers skip (results.read) and `cut_torn_tail` cuts off before anything is appended after it.

Design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

RESULTS_FILE = "results.jsonl"
PART_GLOB = "results-*.jsonl"


def parts(folder: Path) -> list[Path]:
    """The folder's part files, in name order."""
    return sorted(Path(folder).glob(PART_GLOB))


def cut_torn_tail(path: Path) -> int:
    """Truncate `path` after its last newline; returns the bytes cut (0 for a
    sound file). Only a killed writer leaves a line without its newline."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        # scan back for the last newline, a block at a time
        end = size
        while end > 0:
            start = max(0, end - 65536)
            f.seek(start)
            block = f.read(end - start)
            i = block.rfind(b"\n")
            if i >= 0:
                f.truncate(start + i + 1)
                return size - (start + i + 1)
            end = start
        f.truncate(0)
        return size


def _write_all(fd: int, data: bytes) -> None:
    """One os.write, repeated only if the kernel took part of it."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class ResultWriter:
    """Appends records to `<out>/results-<worker>.jsonl`, one whole line per write."""

    def __init__(self, out_dir: Path, worker: str):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / f"results-{worker}.jsonl"
        cut_torn_tail(self.path)  # a killed earlier writer of this name (crossbn run --resume)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path}: written after close")
        _write_all(self._fd, (json.dumps(record) + "\n").encode("utf-8"))

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)  # once, at the end: the run's records reach the disk
            os.close(self._fd)
            self._fd = None


class LiveResults:
    """The controller's `results.jsonl` while the run goes: the complete
    lines the part files have gained since the last `sync`, appended."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / RESULTS_FILE
        self._offsets: dict[Path, int] = {}

    def sync(self) -> int:
        """Append what the parts gained; returns the number of lines appended."""
        chunks = []
        for part in parts(self.folder):
            start = self._offsets.get(part, 0)
            try:
                with open(part, "rb") as f:
                    f.seek(start)
                    data = f.read()
            except FileNotFoundError:
                continue
            whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next sync
            if whole:
                chunks.append(whole)
                self._offsets[part] = start + len(whole)
        if not chunks:
            return 0
        data = b"".join(chunks)
        cut_torn_tail(self.path)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        return data.count(b"\n")


def merge(paths, out_path: Path) -> list[dict]:
    """Merge record files into `out_path` (sorted by key, written whole through
    a renamed temporary file); a later duplicate key replaces an earlier one."""
    from crossbn.records.results import key, read

    merged: dict[tuple, dict] = {}
    for p in paths:
        for r in read(Path(p)):
            merged[key(r)] = r
    records = [merged[k] for k in sorted(merged)]
    write_whole(out_path, records)
    return records


def write_whole(path: Path, records: list[dict]) -> None:
    """`records` as JSON Lines at `path`, never half a file: a temporary file,
    flushed to disk, renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def recover(folder: Path) -> Path | None:
    """A run folder's `results.jsonl` brought up to date with its part files
    (a killed controller did not merge them); None when it has neither."""
    folder = Path(folder)
    target = folder / RESULTS_FILE
    found = parts(folder)
    if not found:
        if not target.is_file() and (folder / "run.json").is_file():
            write_whole(target, [])  # a run killed before its first record: it finished nothing
        return target if target.is_file() else None
    newest = max(p.stat().st_mtime for p in found)
    if not target.is_file() or target.stat().st_mtime < newest or _torn(target):
        merge(found, target)
    return target


def _torn(path: Path) -> bool:
    size = path.stat().st_size
    if size == 0:
        return False
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"
