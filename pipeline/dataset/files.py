"""Durable file writes for the dataset: a reader sees a whole file or none, and a crash loses nothing acked.

    write to a hidden temp file in the target folder → fsync it → rename over the target → fsync the folder

The rename is atomic on POSIX file systems, so a process killed at any point leaves either the old file,
the new file, or an orphaned hidden temp file (readers skip names starting with '.'; see TEMP_PREFIX).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path

TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably and atomically (creating missing parent folders durably too)."""
    _ensure_dir(path.parent)
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make the folder's entries (a rename, a new or deleted file) survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp_files(root: Path, older_than_s: float = 3600.0) -> int:
    """Delete temp files that a killed writer left under ``root``; young ones may belong to a live writer."""
    removed = 0
    cutoff = time.time() - older_than_s
    for temp in root.rglob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            if temp.stat().st_mtime < cutoff:
                temp.unlink()
                removed += 1
    return removed


def _ensure_dir(folder: Path) -> None:
    if folder.is_dir():
        return
    _ensure_dir(folder.parent)
    with contextlib.suppress(FileExistsError):  # another writer made it meanwhile
        folder.mkdir()
    fsync_dir(folder.parent)
