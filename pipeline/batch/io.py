"""The batch run's I/O in one import: post sources (:mod:`pipeline.batch.sources`: JSONL, CSV and Parquet files,
topic ranges; chunked, streaming, resumable from a cursor) and output sinks (:mod:`pipeline.batch.sinks`: JSONL and
Parquet files whose durable length is a checkpoint mark). The contracts are described in those modules."""

from pipeline.batch.sinks import (
    VERDICT_SCHEMA,
    JsonlSink,
    ParquetVerdictSink,
    RecordSink,
    open_sink,
    read_verdicts,
    verdict_table,
)
from pipeline.batch.sources import (
    CSV_SUFFIXES,
    JSONL_SUFFIXES,
    PARQUET_SUFFIXES,
    REQUIRED_COLUMNS,
    Chunk,
    CsvSource,
    Cursor,
    JsonlSource,
    ParquetSource,
    PostSource,
    TopicSource,
    open_file_source,
    open_topic_source,
)

__all__ = [
    "CSV_SUFFIXES", "JSONL_SUFFIXES", "PARQUET_SUFFIXES", "REQUIRED_COLUMNS", "VERDICT_SCHEMA", "Chunk", "CsvSource",
    "Cursor", "JsonlSink", "JsonlSource", "ParquetSource", "ParquetVerdictSink", "PostSource", "RecordSink",
    "TopicSource", "open_file_source", "open_sink", "open_topic_source", "read_verdicts", "verdict_table",
]
