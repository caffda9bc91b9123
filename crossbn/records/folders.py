"""An output folder the user named, checked before any work starts: it must be
a folder, or one that can be made, that this process can write. The check
tries (permissions alone do not say it: root ignores them, a read-only file
system does not) and removes what it made, so a usage error leaves nothing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class FolderError(ValueError):
    """An output folder that cannot be used; the message names the option and the path."""


def check_out_folder(path: str | os.PathLike, option: str) -> Path:
    """`path` as a folder to write into, or a FolderError saying why not
    (`option`: how the user named it, e.g. `--out`)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise FolderError(f"{option} {path}: is a file, not a folder")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise FolderError(f"{option} {path}: {existing} is a file, so no folder can be made under it")
    made: list[Path] = []
    try:
        for step in reversed([folder, *folder.parents]):
            if not step.exists():
                step.mkdir()
                made.append(step)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise FolderError(f"{option} {path}: cannot write there ({e.strerror or e})") from e
    finally:
        for step in reversed(made):
            try:
                step.rmdir()
            except OSError:
                pass
    return folder
