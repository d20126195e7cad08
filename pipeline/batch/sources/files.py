"""The file source for a path, chosen by its extension (JSONL, CSV or Parquet)."""

from __future__ import annotations

from pathlib import Path

from pipeline.batch.sources import PostSource
from pipeline.batch.sources.csv_file import CSV_SUFFIXES, CsvSource
from pipeline.batch.sources.jsonl_file import JSONL_SUFFIXES, JsonlSource
from pipeline.batch.sources.parquet_file import PARQUET_SUFFIXES, ParquetSource
from pipeline.errors import ConfigError

FILE_SUFFIXES = JSONL_SUFFIXES + CSV_SUFFIXES + PARQUET_SUFFIXES


def open_file_source(path: Path) -> PostSource:
    """A source for a JSONL, CSV or Parquet file (by extension). CSV and Parquet columns are checked here."""
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise ConfigError(
            f"{path}: cannot read posts from a {suffix or 'extension-less'} file; accepted: "
            f"{', '.join(FILE_SUFFIXES)} (rename the file if it is one of these)"
        )
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; check the path")
    if suffix in JSONL_SUFFIXES:
        return JsonlSource(path)
    if suffix in CSV_SUFFIXES:
        return CsvSource(path)
    return ParquetSource(path)
