"""Parquet posts (``.parquet``, ``.pq``): rows as JSON objects (null cells dropped, times as ISO 8601); resuming
skips whole row groups by their metadata. Cursor ``{"rows"}``; progress in rows."""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import codec
from pipeline.batch.sources import Chunk, Cursor, check_chunk_size
from pipeline.batch.sources.base import FileSource, check_columns, cursor_count
from pipeline.errors import ConfigError, RecordError
from pipeline.intake import RawRecord

PARQUET_SUFFIXES = (".parquet", ".pq")


class ParquetSource(FileSource):
    kind, format_name, unit = "parquet", "Parquet", "posts"

    def __init__(self, path: Path) -> None:
        try:
            with pq.ParquetFile(path) as file:
                columns = tuple(file.schema_arrow.names)
                self._group_rows = [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)]
        except (pa.ArrowException, OSError) as exc:
            raise ConfigError(f"{path}: not a readable Parquet file ({exc}); check that it is Parquet and "
                              "complete") from exc
        check_columns(path, columns)
        self.columns = columns
        super().__init__(path, sum(self._group_rows))

    def iter_chunks(self, size: int, start: Cursor | None = None) -> Generator[Chunk, None, None]:
        check_chunk_size(size)
        rows = cursor_count(start, "rows", self.path) or 0
        # Skip whole row groups by their metadata, then slice: resuming never decodes what it skips over.
        group, skip = 0, rows
        while group < len(self._group_rows) and skip >= self._group_rows[group]:
            skip -= self._group_rows[group]
            group += 1
        if group == len(self._group_rows):
            return
        records: list[RawRecord] = []
        with pq.ParquetFile(self.path) as file:
            for batch in file.iter_batches(batch_size=size, row_groups=list(range(group, len(self._group_rows)))):
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                if skip:
                    batch, skip = batch.slice(skip), 0
                for row in batch.to_pylist():
                    rows += 1
                    records.append(RawRecord(value=_row_json(row), topic=self.label, offset=rows))
                    if len(records) == size:
                        yield Chunk(records, {"rows": rows}, rows)
                        records = []
        if records:
            yield Chunk(records, {"rows": rows}, rows)


def _row_json(row: dict[str, Any]) -> bytes:
    post = {name: value for name, value in row.items() if value is not None}
    try:
        return codec.dumps(post)
    except RecordError:  # a type JSON lacks (decimal, binary, duration): convert the rare row that has one
        return codec.dumps(_plain(post))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    return value

