"""What the file sources share: reads in a worker thread, records grouped into chunks, the checks of a resume
cursor and of the required columns.

The file sources also accept a bare ``{"rows": n}`` cursor: the first ``n`` records are then skipped by reading
instead of seeking.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from pipeline.batch.sources import Chunk, Cursor, check_chunk_size
from pipeline.errors import ConfigError
from pipeline.intake import RawRecord

REQUIRED_COLUMNS = ("id", "text")


class FileSource(ABC):
    """Common part of the file sources: the blocking reads run in a worker thread, one chunk at a time, so the
    event loop (Message Batch polls, HTTP calls of the runner) is never blocked by the disk."""

    kind: str
    format_name: str
    unit: str

    def __init__(self, path: Path, total_units: int) -> None:
        stat = path.stat()
        self.path = path
        self.label = f"file:{path.name}"
        self.total_units: int | None = total_units
        self.identity: dict[str, Any] = {
            "kind": self.kind, "path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
        }
        self.description = f"{path.name} ({self.format_name}, {human_bytes(stat.st_size)})"

    async def chunks(self, size: int, start: Cursor | None = None) -> AsyncIterator[Chunk]:
        check_chunk_size(size)
        chunks = self.iter_chunks(size, start)
        try:
            while (chunk := await asyncio.to_thread(_next_chunk, chunks)) is not None:
                yield chunk
        finally:
            # A cancelled read may still run in its thread; the generator then closes the file when collected.
            with contextlib.suppress(ValueError):
                chunks.close()

    @abstractmethod
    def iter_chunks(self, size: int, start: Cursor | None = None) -> Generator[Chunk, None, None]:
        """The same chunks, read in the calling thread (each format reads its own way)."""

    async def aclose(self) -> None:  # noqa: B027 (deliberately empty, not abstract: every file source shares it)
        """Nothing to release: files are opened per :meth:`chunks` call."""


def _next_chunk(chunks: Iterator[Chunk]) -> Chunk | None:
    return next(chunks, None)


class Chunker:
    """Groups records into chunks of ``size``. A full chunk is handed out only once the next record shows up, so
    the last chunk gets the cursor of the end of the file (past trailing blank lines): progress reaches the total."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._records: list[RawRecord] = []
        self._full: Chunk | None = None

    @property
    def filled(self) -> bool:
        return len(self._records) == self._size

    def add(self, record: RawRecord) -> Chunk | None:
        """Take ``record``; returns the full chunk that comes before it, if one is waiting."""
        full, self._full = self._full, None
        self._records.append(record)
        return full

    def seal(self, cursor: Cursor, done_units: int) -> None:
        """The records taken make a full chunk, which ends at ``cursor``."""
        self._full, self._records = Chunk(self._records, cursor, done_units), []

    def end(self, cursor: Cursor, done_units: int) -> Chunk | None:
        """The last chunk, ending at ``cursor`` (the end of the input)."""
        records = self._full.records if self._full is not None else self._records
        return Chunk(records, cursor, done_units) if records else None


def check_columns(path: Path, columns: Sequence[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ConfigError(f"{path}: no {' or '.join(repr(c) for c in missing)} column; posts need "
                          f"{' and '.join(REQUIRED_COLUMNS)}, the file has: "
                          f"{', '.join(repr(c) for c in columns) or 'no columns'}. Rename the columns")


def cursor_count(cursor: Cursor | None, key: str, where: object) -> int | None:
    value = (cursor or {}).get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ConfigError(f"resume cursor {cursor!r} does not fit {where} ({key!r} must be a count); delete the "
                          "run's state to start over")
    return value


def text_resume(path: Path, start: Cursor | None) -> tuple[int, int, int | None, int | None]:
    """Where a JSONL or CSV read resumes: (rows done, rows still to skip by reading, byte, line). A cursor with a
    byte offset and a line seeks there (nothing to skip, byte and line set); one without skips its rows by reading
    (no parsing, still cheap) from the start (byte and line None)."""
    rows, byte, line = (cursor_count(start, key, path) for key in ("rows", "byte", "line"))
    _check_byte(path, byte)
    rows = rows or 0
    if byte is not None and line is not None:
        return rows, 0, byte, line
    return rows, rows, None, None


def _check_byte(path: Path, byte: int | None) -> None:
    if byte is not None and byte > path.stat().st_size:
        raise ConfigError(f"{path}: the resume cursor points past the end of the file (byte {byte}); the file "
                          "changed since the run started: delete the run's state to start over")


def human_bytes(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    scaled = float(size)
    for unit in ("kB", "MB", "GB"):
        scaled /= 1000
        if scaled < 1000:
            return f"{scaled:.1f} {unit}"
    return f"{scaled / 1000:.1f} TB"

