"""Outputs sent as whole record batches (``send_batched``, the stream loop's publish) land on the partitions
``producer.send`` would have chosen, in the order they were sent per partition, each acknowledged exactly once; a
record the producer refuses on its own is reported by index while the rest go out."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from aiokafka.errors import MessageSizeTooLargeError

from pipeline.kafka.batched import Record, send_batched
from pipeline.kafka.partitioner import partition_of
from pipeline.kafka.readback import read_to_end
from pipeline.kafka.stream import REFUSED
from pipeline.settings import Settings
from tests.support.kafka import ProducerFactory, TopicFactory

BATCH_BYTES = 16_384


def mixed_records(topics: list[str], n: int, seed: int) -> list[Record]:
    """Mostly small keyed records, some too large to share a batch, some without a key; repeated keys too."""
    rng = random.Random(seed)
    records: list[Record] = []
    for i in range(n):
        key = None if i % 53 == 7 else f"post-{rng.randrange(n // 2)}".encode()
        size = BATCH_BYTES // 2 + rng.randrange(2_000) if i % 41 == 3 else rng.randrange(10, 900)
        records.append((topics[i % len(topics)], key, f"{i:06d}".encode() + b"x" * size))
    return records


async def test_records_land_where_send_would_put_them_in_order_each_acknowledged_once(
    kafka_settings: Settings, topic_factory: TopicFactory, producer_factory: ProducerFactory
) -> None:
    topics = [await topic_factory("batched", partitions=4), await topic_factory("batched", partitions=3)]
    producer = await producer_factory(max_batch_size=BATCH_BYTES)
    records = mixed_records(topics, 1_200, seed=1)

    sent = await send_batched(producer, records, batch_bytes=BATCH_BYTES, refusals=REFUSED)
    await asyncio.gather(*(future for _, future in sent.pending))

    covered = sorted(i for indices, _ in sent.pending for i in indices)
    assert covered == list(range(len(records))) and not sent.refused
    assert len(sent.pending) < len(records) / 5  # whole batches, not one acknowledgement per record
    counts = {topics[0]: 4, topics[1]: 3}
    by_partition: defaultdict[tuple[str, int], list[bytes]] = defaultdict(list)
    for message in sorted(await read_to_end(kafka_settings, topics), key=lambda m: (m.topic, m.partition, m.offset)):
        assert message.value is not None
        by_partition[message.topic, message.partition].append(message.value)
        if message.key is not None:
            assert message.partition == partition_of(message.key, counts[message.topic])
    for (topic, partition), values in by_partition.items():
        expected = [value for t, key, value in records
                    if t == topic and (key is None or partition_of(key, counts[t]) == partition)]
        if all(key is not None for t, key, _ in records if t == topic):
            assert values == expected
        else:  # keyless records go where the partitioner's random pick put them: check the keyed ones' order
            keyed = {value for t, key, value in records if t == topic and key is not None}
            assert [v for v in values if v in keyed] == [v for v in expected if v in keyed]
    assert sum(len(values) for values in by_partition.values()) == len(records)


async def test_a_record_the_producer_refuses_is_reported_and_the_others_go_out(
    kafka_settings: Settings, topic_factory: TopicFactory, producer_factory: ProducerFactory
) -> None:
    topic = await topic_factory("batched", partitions=2)
    producer = await producer_factory(max_batch_size=BATCH_BYTES, max_request_size=64_000)
    records: list[Record] = [(topic, f"k{i}".encode(), f"small {i}".encode()) for i in range(100)]
    records[40] = (topic, b"k40", b"y" * 100_000)

    sent = await send_batched(producer, records, batch_bytes=BATCH_BYTES, refusals=REFUSED)
    await asyncio.gather(*(future for _, future in sent.pending))

    assert list(sent.refused) == [40] and isinstance(sent.refused[40], MessageSizeTooLargeError)
    assert sorted(i for indices, _ in sent.pending for i in indices) == [i for i in range(100) if i != 40]
    values = {m.value for m in await read_to_end(kafka_settings, [topic])}
    assert values == {value for i, (_, _, value) in enumerate(records) if i != 40}
