"""Sending a batch of outputs as whole record batches, one acknowledgement per batch instead of one per record.

``producer.send`` costs ~13 µs of CPU per 440-byte record, its acknowledgement included: the partitioner's
pure-Python murmur2, a future per record, the accumulator's bookkeeping. That is more than the classify stage spends
deciding the post. Here each record is appended to a record batch of its partition (``producer.create_batch``, the
encoding in aiokafka's C builder) and each full batch is handed over with ``producer.send_batch``: the same records
on the same partitions in the same order, acknowledged per batch (acks as configured), for ~3 µs per record
(2,000 records of 440 bytes, median of 6 runs on the 2-core dev machine; BENCHMARKS.md, "Pipeline throughput").

What stays with ``producer.send``: a record without a key (the default partitioner spreads those at random) and a
record too large to share a batch (more than half of ``batch_bytes``): ``send`` checks it against
``max_request_size`` and refuses it on its own (:data:`~pipeline.kafka.stream.REFUSED`), as before. Before such a
record is sent, the open batch of its partition is handed over first, so a partition's records keep their order.
Partitions are the default partitioner's, the keys hashed together (:func:`pipeline.kafka.partitioner.murmur2_all`):
the producers this package builds (:func:`pipeline.kafka.clients.make_producer`) never set another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from pipeline.kafka.partitioner import murmur2_all, partition_from_hash

Record = tuple[str, bytes | None, bytes]
"""(topic, key, value) of one record to send."""


@dataclass(slots=True)
class Sent:
    """Records handed to the producer: each acknowledgement with the indices (into what was sent) of the records it
    covers, and the records the producer refused at once, by index."""

    pending: list[tuple[tuple[int, ...], asyncio.Future[Any]]] = field(default_factory=list)
    refused: dict[int, KafkaError] = field(default_factory=dict)


@dataclass(slots=True)
class _Open:
    batch: Any  # aiokafka's BatchBuilder
    indices: list[int]


async def send_batched(producer: AIOKafkaProducer, records: Sequence[Record], *, batch_bytes: int,
                       refusals: tuple[type[KafkaError], ...]) -> Sent:
    """Hand every record to ``producer`` (started), in order per partition; nothing is awaited but the producer's
    room for more. ``refusals`` are the errors with which ``producer.send`` refuses one record for good (they are
    recorded in :attr:`Sent.refused`; any other error is raised)."""
    sent = Sent()
    partitions: dict[str, int] = {}
    open_batches: dict[tuple[str, int], _Open] = {}  # plain tuples: a TopicPartition per record costs ~0.3 µs
    alone = batch_bytes // 2

    async def hand_over(where: tuple[str, int]) -> None:
        if (current := open_batches.pop(where, None)) is not None:
            topic, partition = where
            future = await producer.send_batch(current.batch, topic, partition=partition)
            sent.pending.append((tuple(current.indices), future))

    hashes = iter(murmur2_all([key for _, key, _ in records if key is not None]))
    for i, (topic, key, value) in enumerate(records):
        if key is None:
            await _send_one(producer, sent, i, topic, key, value, refusals)
            continue
        count = partitions.get(topic)
        if count is None:
            count = partitions[topic] = len(await producer.partitions_for(topic))
        where = (topic, partition_from_hash(next(hashes), count))
        if DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, []) > alone:
            await hand_over(where)
            await _send_one(producer, sent, i, topic, key, value, refusals, partition=where[1])
            continue
        current = open_batches.get(where)
        if current is None:
            current = open_batches[where] = _Open(producer.create_batch(), [])
        if current.batch.append(timestamp=None, key=key, value=value) is None:  # full: hand it over, start anew
            await hand_over(where)
            current = open_batches[where] = _Open(producer.create_batch(), [])
            current.batch.append(timestamp=None, key=key, value=value)  # fits: at most half a batch
        current.indices.append(i)
    for where in list(open_batches):
        await hand_over(where)
    return sent


async def _send_one(producer: AIOKafkaProducer, sent: Sent, i: int, topic: str, key: bytes | None, value: bytes,
                    refusals: tuple[type[KafkaError], ...], partition: int | None = None) -> None:
    try:
        sent.pending.append(((i,), await producer.send(topic, value, key=key, partition=partition)))
    except refusals as exc:  # the producer's own check (max_request_size), before anything is sent
        sent.refused[i] = exc
