"""JSONL posts (``.jsonl``, ``.ndjson``): every non-blank line's bytes, as they are (newline cut), not parsed here;
offset = its 1-based line number. Cursor ``{"rows", "byte", "line"}``; progress in bytes."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

from pipeline.batch.sources import Chunk, Cursor, check_chunk_size
from pipeline.batch.sources.base import Chunker, FileSource, text_resume
from pipeline.intake import RawRecord

JSONL_SUFFIXES = (".jsonl", ".ndjson")


class JsonlSource(FileSource):
    kind, format_name, unit = "jsonl", "JSONL", "B"

    def __init__(self, path: Path) -> None:
        super().__init__(path, path.stat().st_size)

    def iter_chunks(self, size: int, start: Cursor | None = None) -> Generator[Chunk, None, None]:
        check_chunk_size(size)
        rows, skip, byte, line = text_resume(self.path, start)
        byte, line = byte or 0, line or 0
        chunker = Chunker(size)
        with self.path.open("rb") as file:
            file.seek(byte)
            for raw in file:
                byte += len(raw)
                line += 1
                value = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1] if raw.endswith(b"\n") else raw
                if not value.strip():
                    continue
                if skip:
                    skip -= 1
                    continue
                rows += 1
                if full := chunker.add(RawRecord(value=value, topic=self.label, offset=line)):
                    yield full
                if chunker.filled:
                    chunker.seal({"rows": rows, "byte": byte, "line": line}, byte)
        if last := chunker.end({"rows": rows, "byte": byte, "line": line}, byte):
            yield last

