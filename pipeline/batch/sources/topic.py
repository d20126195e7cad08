"""A range of a topic as a batch post source: every partition, assigned (no consumer group), from an offset (clamped
to the log start), a time or the log start, up to the end each partition had when the source was opened.

Cursor ``{"offsets", "starts", "ends"}`` (partition as a string -> offset); progress in records. The cursor carries
its range, so a resumed range ends where the interrupted one would have, even if records were produced in between;
``total_units`` is updated from it when :meth:`TopicSource.chunks` starts. Which offsets a range covers, and how
they are read on Kafka and on the embedded broker, is :mod:`pipeline.kafka.offsets`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

from pipeline.batch.sources import Chunk, Cursor, PostSource, check_chunk_size
from pipeline.errors import ConfigError
from pipeline.intake import RawRecord
from pipeline.kafka.clients import broker_errors, make_consumer, start_client
from pipeline.kafka.offsets import Message, RangeReader, range_errors, resolve_range
from pipeline.settings import Settings


async def open_topic_source(settings: Settings, topic: str, *, from_offset: int | None = None,
                            from_time: datetime | None = None) -> PostSource:
    """A range of ``topic``: every partition from ``from_offset`` (clamped to the log start), or from the first
    record at or after ``from_time`` (naive = UTC), or from the log start; up to the ends it has now."""
    if from_offset is not None and from_time is not None:
        raise ConfigError("give a topic range a start offset or a start time, not both")
    if from_offset is not None and from_offset < 0:
        raise ConfigError(f"start offset {from_offset} is negative; offsets start at 0")
    consumer = make_consumer(settings, group_id=None, auto_offset_reset="none")
    await start_client(consumer, settings, "batch topic reader")
    try:
        with broker_errors(f"reading the range of topic {topic}", settings.bootstrap):
            return await TopicSource.open(consumer, settings, topic, from_offset, from_time)
    except BaseException:
        await consumer.stop()
        raise


class TopicSource:
    """A fixed range of a topic, read with manual assignment. Build with :func:`open_topic_source`."""

    unit = "posts"

    def __init__(self, consumer: AIOKafkaConsumer, settings: Settings, topic: str, starts: dict[int, int],
                 ends: dict[int, int], identity: dict[str, Any], start_text: str) -> None:
        self._consumer = consumer
        self._settings = settings
        self.topic = topic
        self.starts = starts
        self.ends = ends
        self.identity = identity
        self.total_units: int | None = _count(starts, ends)
        spans = " ".join(f"[{starts[p]}..{ends[p]})" for p in sorted(ends))
        self.description = (f"topic {topic} {spans} over {len(ends)} partition{'s' if len(ends) != 1 else ''} "
                            f"({self.total_units} records, {start_text})")
        self._closed = False

    @classmethod
    async def open(cls, consumer: AIOKafkaConsumer, settings: Settings, topic: str, from_offset: int | None,
                   from_time: datetime | None) -> TopicSource:
        span = await resolve_range(consumer, settings, topic, from_offset, from_time)
        identity = {"kind": "topic", "topic": topic, "partitions": len(span.ends), "from_offset": from_offset,
                    "from_time": None if from_time is None else span.start.removeprefix("from ")}
        return cls(consumer, settings, topic, span.starts, span.ends, identity, span.start)

    async def chunks(self, size: int, start: Cursor | None = None) -> AsyncIterator[Chunk]:
        check_chunk_size(size)
        # A resumed range keeps the range of the run that began it (carried in the cursor), not today's ends.
        ends = _partition_map(start, "ends", self.topic) or self.ends
        cursor_starts = _partition_map(start, "starts", self.topic)
        starts = {p: cursor_starts.get(p, self.starts.get(p, ends[p])) for p in ends}
        cursor_offsets = _partition_map(start, "offsets", self.topic)
        offsets = {p: min(max(cursor_offsets.get(p, starts[p]), starts[p]), ends[p]) for p in ends}
        self.total_units = _count(starts, ends)
        reader = RangeReader(self._consumer, self._settings, self.topic, offsets, ends)
        while not reader.done:
            batch: list[Message] = []
            while len(batch) < size and not reader.done:
                with range_errors(self._settings, self.topic):
                    batch.extend(await reader.read(size - len(batch)))
            if batch:
                cursor = {"offsets": _as_json(reader.positions), "starts": _as_json(starts), "ends": _as_json(ends)}
                yield Chunk([_raw_record(m) for m in batch], cursor, _count(starts, reader.positions))

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._consumer.stop()


def _raw_record(message: Message) -> RawRecord:
    return RawRecord(value=message.value, key=message.key, topic=message.topic, partition=message.partition,
                     offset=message.offset, timestamp_ms=message.timestamp)


def _count(starts: dict[int, int], positions: dict[int, int]) -> int:
    return sum(max(positions[p] - starts[p], 0) for p in positions if p in starts)


def _as_json(offsets: dict[int, int]) -> dict[str, int]:
    return {str(p): o for p, o in sorted(offsets.items())}


def _partition_map(cursor: Cursor | None, key: str, topic: str) -> dict[int, int]:
    value = (cursor or {}).get(key, {})
    try:
        parsed = {int(p): o for p, o in value.items()}
    except (AttributeError, TypeError, ValueError):
        parsed = None
    if parsed is None or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in parsed.values()):
        raise ConfigError(f"resume cursor {cursor!r} does not fit topic {topic} ({key!r} must map partitions to "
                          "offsets); delete the run's state to start over")
    return parsed
