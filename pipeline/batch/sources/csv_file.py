"""CSV posts (``.csv``): a header row with at least ``id`` and ``text``; each row becomes a JSON object (empty cells
of the other columns dropped, unknown columns kept: Post keeps them in meta); offset = 1-based data row (blank rows
are skipped and not counted). A row that cannot be a JSON object (more cells than columns, bytes that are not
UTF-8) is passed on as its raw bytes so that intake dead-letters it. Cursor ``{"rows", "byte", "line"}``; progress
in bytes."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO, Any

from pipeline import codec
from pipeline.batch.sources import Chunk, Cursor, check_chunk_size
from pipeline.batch.sources.base import REQUIRED_COLUMNS, Chunker, FileSource, check_columns, text_resume
from pipeline.errors import ConfigError, DecodeError, RecordError
from pipeline.intake import RawRecord

CSV_SUFFIXES = (".csv",)

# A post is at most MODCASCADE_MAX_TEXT_BYTES (32 KiB by default); the csv module's 128 KiB default would still
# stop a long post with an error, while a quote left open would read the rest of the file into one field.
_CSV_FIELD_LIMIT = 16 * 1024 * 1024


class _Lines:
    """Binary lines decoded for the csv module, counting bytes and keeping the raw bytes of the current row.

    csv.reader pulls exactly the lines of one row before returning it, so after each row ``byte`` is the
    offset where the next row starts: a cursor can seek there. Bytes that are not UTF-8 survive
    (surrogateescape) so that the row can be handed on byte-exact.
    """

    def __init__(self, file: IO[bytes], byte: int, line: int) -> None:
        self._file = file
        self.byte = byte
        self.line = line
        self._raw: list[bytes] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self._file.readline()
        if not raw:
            raise StopIteration
        self.byte += len(raw)
        self.line += 1
        self._raw.append(raw)
        return raw.decode("utf-8", "surrogateescape")

    def take(self) -> bytes:
        """The raw bytes of the row just read (its line endings cut off at the end)."""
        raw = b"".join(self._raw)
        self._raw.clear()
        return raw.rstrip(b"\r\n")


class CsvSource(FileSource):
    kind, format_name, unit = "csv", "CSV", "B"

    def __init__(self, path: Path) -> None:
        super().__init__(path, path.stat().st_size)
        self.columns, self._data_byte, self._data_line = self._read_header()

    def _reader(self, lines: _Lines) -> Iterator[list[str]]:
        csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
        reader = csv.reader(lines)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ConfigError(f"{self.path}: not valid CSV near line {lines.line} ({exc}); fix that row "
                                  "(a quote left open makes the rest of the file one cell)") from exc
            if any(cell.strip() for cell in row):  # blank rows are not data rows
                yield row

    def _read_header(self) -> tuple[tuple[str, ...], int, int]:
        with self.path.open("rb") as file:
            lines = _Lines(file, 0, 0)
            header = next(self._reader(lines), None)
            if header is None:
                raise ConfigError(f"{self.path}: empty CSV; the first row must name the columns, with at least "
                                  f"{' and '.join(REQUIRED_COLUMNS)}")
            columns = tuple(name.strip().lstrip("\ufeff").strip() for name in header)
            check_columns(self.path, columns)
            if len(set(columns)) != len(columns):
                duplicates = sorted({c for c in columns if columns.count(c) > 1})
                raise ConfigError(f"{self.path}: column(s) {', '.join(duplicates)} appear more than once in the "
                                  "header; rename them")
            return columns, lines.byte, lines.line

    def iter_chunks(self, size: int, start: Cursor | None = None) -> Generator[Chunk, None, None]:
        check_chunk_size(size)
        rows, skip, byte, line = text_resume(self.path, start)
        chunker = Chunker(size)
        with self.path.open("rb") as file:
            lines = _Lines(file, byte, line) if byte is not None and line is not None else \
                _Lines(file, self._data_byte, self._data_line)
            file.seek(lines.byte)
            for row in self._reader(lines):
                raw = lines.take()
                if skip:
                    skip -= 1
                    continue
                rows += 1
                if full := chunker.add(RawRecord(value=self._encode(row, raw), topic=self.label, offset=rows)):
                    yield full
                if chunker.filled:
                    chunker.seal({"rows": rows, "byte": lines.byte, "line": lines.line}, lines.byte)
        if last := chunker.end({"rows": rows, "byte": lines.byte, "line": lines.line}, lines.byte):
            yield last

    def _encode(self, row: list[str], raw: bytes) -> bytes:
        if len(row) > len(self.columns):
            return raw  # cells without a column: which is the text is a guess, so intake dead-letters the row
        post: dict[str, Any] = {}
        for name, cell in zip(self.columns, row, strict=False):  # a short row: the missing cells are empty
            if cell or name in REQUIRED_COLUMNS:
                post[name] = cell
        if "meta" in post:  # a meta column holding a JSON object is the map itself, not a string
            with contextlib.suppress(DecodeError):
                meta = codec.loads(post["meta"])
                if isinstance(meta, dict):
                    post["meta"] = meta
        try:
            return codec.dumps(post)
        except RecordError:  # JSON cannot carry the surrogates of bytes that are not UTF-8: intake reports invalid_utf8
            return raw

