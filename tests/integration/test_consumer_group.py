"""Two consumers in one group share the partitions; what a group committed is not read again by a new
member (the basis of at-least-once: commit only after the outputs are acknowledged)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.settings import Settings
from tests.support.kafka import ConsumerFactory, ProducerFactory, TopicFactory, fast_group, read_records, unique

pytestmark = pytest.mark.broker

PARTITIONS = 4


async def _until_shared(first: AIOKafkaConsumer, second: AIOKafkaConsumer, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            mine, theirs = first.assignment(), second.assignment()
            if mine and theirs and not mine & theirs and len(mine | theirs) == PARTITIONS:
                return
            # Nothing has been produced yet, so polling reads nothing; it keeps both members in the group.
            await asyncio.gather(first.getmany(timeout_ms=100), second.getmany(timeout_ms=100))


async def test_two_consumers_share_partitions_and_committed_offsets_are_not_reread(
    kafka_settings: Settings,
    topic_factory: TopicFactory, producer_factory: ProducerFactory, consumer_factory: ConsumerFactory,
) -> None:
    topic = await topic_factory("group", partitions=PARTITIONS)
    group, options = unique("group"), fast_group(kafka_settings)
    first, second = await asyncio.gather(
        consumer_factory(topic, group_id=group, **options),
        consumer_factory(topic, group_id=group, **options),
    )
    await _until_shared(first, second)

    producer = await producer_factory()
    sent = [f"m{i}".encode() for i in range(20)]
    for i, value in enumerate(sent):
        await producer.send(topic, value, partition=i % PARTITIONS)
    await producer.flush()

    seen: dict[AIOKafkaConsumer, list[bytes]] = {first: [], second: []}
    async with asyncio.timeout(15):
        while sum(map(len, seen.values())) < len(sent):
            for consumer in seen:
                for tp, records in (await consumer.getmany(timeout_ms=100)).items():
                    assert tp in consumer.assignment()
                    seen[consumer].extend(r.value for r in records)
    assert seen[first] and seen[second], "each member of the group reads its own partitions"
    assert sorted(seen[first] + seen[second]) == sorted(sent)
    await asyncio.gather(first.commit(), second.commit())
    await asyncio.gather(first.stop(), second.stop())

    later = [f"n{i}".encode() for i in range(8)]
    for value in later:
        await producer.send(topic, value)
    await producer.flush()
    newcomer = await consumer_factory(topic, group_id=group, **options)
    records = await read_records(newcomer, len(later), timeout_s=20)
    assert not await newcomer.getmany(timeout_ms=500), "nothing beyond the committed offsets is delivered"
    assert sorted(r.value for r in records) == sorted(later)
