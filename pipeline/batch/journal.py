"""An append-only JSONL journal whose durable length is the checkpoint's handle on it.

    journal = Journal(path, resume_mark=state.marks.get("deferred"))   # drops what came after the checkpoint
    journal.append([{...}, {...}])
    mark = journal.mark()                                             # flush + fsync; the byte length
    for offset, entry in journal.read(start, end): ...                # a byte range recorded earlier

The batch run keeps two: the deferrable escalations waiting for (or in) a Message Batch, and the outcomes of
urgent escalations settled in the chunk in progress (so a run killed mid-chunk does not pay for them twice).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pipeline import codec


class Journal:
    def __init__(self, path: Path, *, resume_mark: int | None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO
        if resume_mark is None:
            self._file = path.open("wb")
        else:
            self._file = path.open("r+b" if path.exists() else "w+b")
            self._file.truncate(resume_mark)
            self._file.seek(resume_mark)
        self.size = self._file.tell()

    def append(self, entries: Iterable[dict[str, Any]], *, flush: bool = False) -> int:
        """Append entries; returns the byte length after them. ``flush`` hands them to the OS now (they then
        survive the process being killed, not a power cut: :meth:`mark` is what makes them durable)."""
        for entry in entries:
            self.size += self._file.write(codec.dumps(entry) + b"\n")
        if flush:
            self._file.flush()
        return self.size

    def mark(self) -> int:
        self._file.flush()
        os.fsync(self._file.fileno())
        return self.size

    def reset(self) -> None:
        """Empty the journal (its entries are now recorded elsewhere)."""
        self._file.truncate(0)
        self._file.seek(0)
        self.size = 0

    def read(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(offset after it, entry)`` for the entries between two byte offsets this journal returned (flushed
        first, so the tail is visible). A last line cut short by a kill is not an entry."""
        self._file.flush()
        with self.path.open("rb") as reader:
            reader.seek(start)
            while end is None or reader.tell() < end:
                line = reader.readline()
                if not line.endswith(b"\n"):
                    return
                yield reader.tell(), codec.loads(line)

    def close(self) -> None:
        self._file.close()
