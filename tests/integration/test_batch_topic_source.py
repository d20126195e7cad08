"""A topic range as a batch source, on the broker: every partition from an offset or a time up to the ends at
open (records produced later are not in it, also when resuming), resumable from every cursor, nothing twice and
nothing lost. Records are produced in multi-record batches on purpose: the embedded broker's ListOffsets answers
the last batch's base offset there, which the source must not trust."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.batch.io import Chunk, Cursor, PostSource, open_topic_source
from pipeline.errors import ConfigError
from pipeline.intake import RawRecord
from pipeline.settings import Settings
from tests.support.kafka import ProducerFactory, TopicFactory, unique

pytestmark = pytest.mark.broker

PARTITIONS = 3
PER_PARTITION = 20
# Recent enough for any broker's timestamp checks, old enough never to be "in the future".
BASE_MS = int(time.time() * 1000) - 30 * 60 * 1000

Key = tuple[int, int]  # (partition, offset)


async def produce(producer_factory: ProducerFactory, topic: str, per_partition: int, *, tag: str = "p",
                  first_ms: int = BASE_MS) -> None:
    """``per_partition`` records into each partition, sent together (so in multi-record batches), one second of
    timestamp apart within a partition."""
    producer = await producer_factory(linger_ms=20)
    sends = [await producer.send(topic, f'{{"id": "{tag}-{p}-{i}", "text": "post {i}"}}'.encode(),
                                 key=f"{tag}-{p}-{i}".encode(), partition=p, timestamp_ms=first_ms + i * 1000)
             for i in range(per_partition) for p in range(PARTITIONS)]
    await asyncio.gather(*sends)


async def read_all(source: PostSource, size: int, start: Cursor | None = None) -> list[Chunk]:
    async with asyncio.timeout(60):
        return [chunk async for chunk in source.chunks(size, start)]


def keys(records: list[RawRecord]) -> list[Key]:
    return [(r.partition or 0, r.offset or 0) for r in records]


def flat(chunks: list[Chunk]) -> list[RawRecord]:
    return [r for c in chunks for r in c.records]


@pytest.fixture
async def topic(topic_factory: TopicFactory, producer_factory: ProducerFactory) -> str:
    name = await topic_factory("batch-src", partitions=PARTITIONS)
    await produce(producer_factory, name, PER_PARTITION)
    return name


async def test_whole_range_in_chunks_with_kafka_coordinates(kafka_settings: Settings, topic: str) -> None:
    source = await open_topic_source(kafka_settings, topic)
    try:
        assert (source.unit, source.total_units) == ("posts", PARTITIONS * PER_PARTITION)
        assert source.identity == {"kind": "topic", "topic": topic, "partitions": PARTITIONS, "from_offset": None,
                                   "from_time": None}
        assert f"topic {topic} [0..20) [0..20) [0..20) over 3 partitions" in source.description
        chunks = await read_all(source, 7)
    finally:
        await source.aclose()
    records = flat(chunks)
    assert sorted(keys(records)) == [(p, o) for p in range(PARTITIONS) for o in range(PER_PARTITION)]
    assert [len(c.records) for c in chunks] == [7] * 8 + [4]
    assert [c.done_units for c in chunks] == [7 * (i + 1) for i in range(8)] + [60]
    assert chunks[-1].cursor["offsets"] == {str(p): PER_PARTITION for p in range(PARTITIONS)}
    first = next(r for r in records if (r.partition, r.offset) == (1, 3))
    assert (first.topic, first.key, first.timestamp_ms) == (topic, b"p-1-3", BASE_MS + 3000)
    assert first.value == b'{"id": "p-1-3", "text": "post 3"}'


async def test_from_an_offset_clamped_per_partition(kafka_settings: Settings, topic: str) -> None:
    for from_offset, expected in ((15, PARTITIONS * 5), (0, PARTITIONS * PER_PARTITION), (500, 0)):
        source = await open_topic_source(kafka_settings, topic, from_offset=from_offset)
        try:
            assert source.total_units == expected
            records = flat(await read_all(source, 4))
        finally:
            await source.aclose()
        assert sorted(keys(records)) == [(p, o) for p in range(PARTITIONS) for o in range(from_offset, PER_PARTITION)]


async def test_records_produced_after_open_are_not_in_the_range(
    kafka_settings: Settings, topic: str, producer_factory: ProducerFactory,
) -> None:
    source = await open_topic_source(kafka_settings, topic, from_offset=10)
    try:
        await produce(producer_factory, topic, 5, tag="late")
        records = flat(await read_all(source, 6))
    finally:
        await source.aclose()
    assert len(records) == PARTITIONS * 10
    assert not any((r.key or b"").startswith(b"late") for r in records)


async def test_resume_from_every_cursor_gives_exactly_the_rest(
    kafka_settings: Settings, topic: str, producer_factory: ProducerFactory,
) -> None:
    source = await open_topic_source(kafka_settings, topic, from_offset=2)
    try:
        chunks = await read_all(source, 5)
        everything = keys(flat(chunks))
        assert len(everything) == len(set(everything)) == PARTITIONS * 18
        await produce(producer_factory, topic, 4, tag="late")  # after the range: a resumed range still ends before
        for i, chunk in enumerate(chunks):
            rest = keys(flat(await read_all(source, 5, chunk.cursor)))
            assert sorted(keys(flat(chunks[: i + 1])) + rest) == sorted(everything), f"resume after chunk {i}"
    finally:
        await source.aclose()
    # a new source (a new process resuming) with the same arguments: the cursor carries the range
    again = await open_topic_source(kafka_settings, topic, from_offset=2)
    try:
        assert again.identity == source.identity
        resumed = await read_all(again, 5, chunks[3].cursor)
        assert again.total_units == PARTITIONS * 18
    finally:
        await again.aclose()
    assert sorted(keys(flat(chunks[:4]) + flat(resumed))) == sorted(everything)
    assert resumed[0].done_units == 4 * 5 + len(resumed[0].records)


async def test_from_a_time(kafka_settings: Settings, topic: str) -> None:
    at = datetime.fromtimestamp(BASE_MS / 1000, UTC) + timedelta(seconds=12, milliseconds=500)
    cases = [
        (at, [(p, o) for p in range(PARTITIONS) for o in range(13, PER_PARTITION)]),
        (at.replace(tzinfo=None), [(p, o) for p in range(PARTITIONS) for o in range(13, PER_PARTITION)]),  # naive: UTC
        (at - timedelta(hours=1), [(p, o) for p in range(PARTITIONS) for o in range(PER_PARTITION)]),
        (at + timedelta(minutes=1), []),  # no record at or after that time: nothing
    ]
    for from_time, expected in cases:
        source = await open_topic_source(kafka_settings, topic, from_time=from_time)
        try:
            assert source.total_units == len(expected)
            records = flat(await read_all(source, 8))
        finally:
            await source.aclose()
        assert sorted(keys(records)) == expected, from_time
        assert all((r.timestamp_ms or 0) >= BASE_MS + 13_000 for r in records) or from_time < at


async def test_an_empty_topic_gives_no_chunks_and_a_missing_one_is_a_config_error(
    kafka_settings: Settings, topic_factory: TopicFactory,
) -> None:
    empty = await topic_factory("batch-empty", partitions=2)
    source = await open_topic_source(kafka_settings, empty)
    try:
        assert source.total_units == 0
        assert await read_all(source, 10) == []
    finally:
        await source.aclose()
    missing = unique("batch-missing")
    with pytest.raises(ConfigError, match=missing):
        await open_topic_source(kafka_settings, missing)
    with pytest.raises(ConfigError, match="not both"):
        await open_topic_source(kafka_settings, empty, from_offset=1, from_time=datetime.now(UTC))


async def test_a_range_end_that_is_no_record_ends_after_an_idle_wait_instead_of_hanging(
    kafka_settings: Settings, topic: str, caplog: pytest.LogCaptureFixture,
) -> None:
    # Offsets 20..24 of partition 0 are no records (as when compacted away or transaction markers end a range).
    cursor = {"offsets": {"0": 18, "1": 20, "2": 20}, "starts": {"0": 0, "1": 0, "2": 0},
              "ends": {"0": 25, "1": 20, "2": 20}}
    source = await open_topic_source(kafka_settings, topic)
    try:
        started = time.monotonic()
        chunks = await read_all(source, 10, cursor)
    finally:
        await source.aclose()
    assert keys(flat(chunks)) == [(0, 18), (0, 19)]
    assert time.monotonic() - started < 15
    assert "no records from offset 20 up to the range end 25" in caplog.text
