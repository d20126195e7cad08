"""The produce/read-back toolkit against the broker: publish with acks, read topics to their real end (the
embedded broker's listed end offsets under-count), start at the end, bounded reads that keep what came."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import BrokerError
from pipeline.kafka.readback import TopicReader, jsonl_records, produce, read_range, read_to_end
from pipeline.settings import Settings
from tests.support.kafka import TopicFactory


def test_jsonl_records_are_keyed_by_post_id_and_skip_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    path.write_bytes(b'{"id": "a", "text": "x"}\r\n\n   \n{"id": 7, "text": "y"}\nnot json\n')
    assert list(jsonl_records(path)) == [(b"a", b'{"id": "a", "text": "x"}'), (b"7", b'{"id": 7, "text": "y"}'),
                                         (None, b"not json")]


async def test_read_to_end_returns_every_record_of_several_topics(kafka_settings: Settings,
                                                                  topic_factory: TopicFactory) -> None:
    first, second = await topic_factory("readback", partitions=3), await topic_factory("readback", partitions=2)
    # Many small batches per partition: tansu lists the end as the base offset of the last batch.
    for start in range(0, 300, 30):
        await produce(kafka_settings, first, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(start, start + 30)])
    assert await produce(kafka_settings, second, [(None, b"only")]) == 1
    records = await read_to_end(kafka_settings, [first, second])
    assert sorted(m.value for m in records if m.topic == first) == sorted(f"v{i}".encode() for i in range(300))
    assert [m.value for m in records if m.topic == second] == [b"only"]


async def test_a_range_read_returns_exactly_the_offsets_asked_for(kafka_settings: Settings,
                                                                  topic_factory: TopicFactory) -> None:
    topic = await topic_factory("readback")
    for start in range(0, 60, 6):  # several record batches: a range starts and ends inside them
        await produce(kafka_settings, topic, [(None, f"v{i}".encode()) for i in range(start, start + 6)])
    middle = await read_range(kafka_settings, topic, 0, 10, 25)
    assert [(m.offset, m.value) for m in middle] == [(i, f"v{i}".encode()) for i in range(10, 25)]
    assert [m.value for m in await read_range(kafka_settings, topic, 0, 0, 1)] == [b"v0"]
    assert await read_range(kafka_settings, topic, 0, 7, 7) == []


async def test_a_reader_opened_at_the_end_sees_only_what_comes_later(kafka_settings: Settings,
                                                                     topic_factory: TopicFactory) -> None:
    topic = await topic_factory("readback", partitions=2)
    for start in range(0, 100, 10):
        await produce(kafka_settings, topic, [(str(i).encode(), b"old") for i in range(start, start + 10)])
    async with TopicReader.open(kafka_settings, [topic], start="end") as reader:
        await produce(kafka_settings, topic, [(b"n1", b"new"), (b"n2", b"new")], rate_per_s=50.0)
        got = await reader.read_count(2, timeout_s=15)
        assert [m.value for m in await reader.read_until(lambda seen: True, timeout_s=5, quiet_s=0.5)] == [b"new"] * 2
    assert sorted(m.key for m in got) == [b"n1", b"n2"]


async def test_a_bounded_read_times_out_and_keeps_what_came(kafka_settings: Settings,
                                                            topic_factory: TopicFactory) -> None:
    topic = await topic_factory("readback")
    await produce(kafka_settings, topic, [(b"a", b"1")])
    async with TopicReader.open(kafka_settings, [topic]) as reader:
        with pytest.raises(TimeoutError):
            await reader.read_count(2, timeout_s=1.0)
        assert [m.value for m in reader.messages] == [b"1"]


async def test_reading_a_missing_topic_names_it(kafka_settings: Settings) -> None:
    with pytest.raises(BrokerError, match="no-such-topic-readback"):
        await read_to_end(kafka_settings, ["no-such-topic-readback"])
