"""The batch run's I/O in one import, for the command and the tests: post sources (:mod:`pipeline.batch.sources`:
JSONL, CSV and Parquet files, topic ranges; chunked, streaming, resumable from a cursor) and output sinks
(:mod:`pipeline.batch.sinks`: JSONL and Parquet files whose durable length is a checkpoint mark). The contracts are
described in those modules. This module loads the Kafka client (the topic source): the runner imports the
transport-neutral modules instead."""

from pipeline.batch.sinks import (
    VERDICT_SCHEMA,
    JsonlSink,
    ParquetVerdictSink,
    RecordSink,
    open_sink,
    read_verdicts,
    verdict_table,
)
from pipeline.batch.sources import Chunk, Cursor, PostSource
from pipeline.batch.sources.base import REQUIRED_COLUMNS
from pipeline.batch.sources.csv_file import CSV_SUFFIXES, CsvSource
from pipeline.batch.sources.files import open_file_source
from pipeline.batch.sources.jsonl_file import JSONL_SUFFIXES, JsonlSource
from pipeline.batch.sources.parquet_file import PARQUET_SUFFIXES, ParquetSource
from pipeline.batch.sources.topic import TopicSource, open_topic_source

__all__ = [
    "CSV_SUFFIXES", "JSONL_SUFFIXES", "PARQUET_SUFFIXES", "REQUIRED_COLUMNS", "VERDICT_SCHEMA", "Chunk", "CsvSource",
    "Cursor", "JsonlSink", "JsonlSource", "ParquetSource", "ParquetVerdictSink", "PostSource", "RecordSink",
    "TopicSource", "open_file_source", "open_sink", "open_topic_source", "read_verdicts", "verdict_table",
]
