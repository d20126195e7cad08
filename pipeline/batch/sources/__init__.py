"""Post sources of ``modcascade batch``: the contract every source keeps. Nothing here reads anything, and nothing
here loads a Kafka client: the runner takes any :class:`PostSource`.

A source hands out posts in chunks of raw records, never the whole input (memory stays flat on inputs larger than
RAM), each chunk with the cursor of the position after it, so a run resumes exactly where its last checkpoint
stood::

    source = open_file_source(Path("posts.jsonl"))    # or: await open_topic_source(settings, "posts", from_offset=0)
    try:
        async for chunk in source.chunks(2048, start=checkpoint_cursor):   # None: from the start
            ... chunk.records (RawRecord: intake decodes them and dead-letters bad ones) ...
            ... checkpoint chunk.cursor together with the sinks' marks ...
    finally:
        await source.aclose()

Resuming from a chunk's cursor yields exactly the records after that chunk: none twice, none lost. Every chunk
holds ``size`` records except the last; an empty input yields no chunk. ``identity`` holds what names the input
(a file's path, size and mtime; a topic's name, partition count and start), never where it ends, so it is the
same for every open of that input.

    files.py         open_file_source: the format by the file's extension
    jsonl_file.py    JSONL: every non-blank line's bytes, as they are; cursor {"rows", "byte", "line"}
    csv_file.py      CSV with a header row; each row a JSON object; cursor {"rows", "byte", "line"}
    parquet_file.py  Parquet rows as JSON objects; resuming skips whole row groups; cursor {"rows"}
    base.py          what the file sources share: reads in a worker thread, chunking, cursor checks
    topic.py         a range of a topic, partitions assigned (no consumer group); cursor {"offsets", "starts",
                     "ends"}. The offsets it covers are worked out by :mod:`pipeline.kafka.offsets`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.intake import RawRecord

Cursor = dict[str, Any]
"""Where a source resumes; JSON-able. Files: ``{"rows": n, ...}``; topics: ``{"offsets": {"<partition>": next}}``."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Up to ``size`` records, with the cursor of the position after them and the progress so far."""

    records: list[RawRecord]
    cursor: Cursor
    done_units: int


class PostSource(Protocol):
    description: str
    """For people: ``posts.jsonl (JSONL, 12.3 MB)``, ``topic posts [0..1234) over 4 partitions``."""
    total_units: int | None
    """Size of the input in ``unit`` (bytes for JSONL and CSV, rows for Parquet, records for a topic range)."""
    unit: str
    """``"B"`` or ``"posts"``."""
    identity: dict[str, Any]
    """What identifies the input for a resume check (stable across opens of the same input)."""

    def chunks(self, size: int, start: Cursor | None) -> AsyncIterator[Chunk]: ...

    async def aclose(self) -> None: ...


def check_chunk_size(size: int) -> None:
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")


__all__ = ["Chunk", "Cursor", "PostSource", "check_chunk_size"]
