"""The at-least-once batch loop every stream worker runs: consume → process → publish → await acks → commit.

    batch = gather(up to max_records, or max_wait after the first record)
    outputs = await processor.process(batch, wait)       # the library's logic; may back off via wait()
    send every output, then await all their acknowledgements (acks=all)
    commit the batch's offsets                             # only now: a crash before this re-reads the batch
    processor.published(outputs)                           # metrics, once the outputs are durable

Why the offsets move only after the acknowledgements: a worker killed at any point (SIGKILL included)
either committed a batch whose outputs are all in Kafka, or did not commit it and the group re-reads
it. Outputs may then be published twice; consumers de-duplicate by ``verdict_id``. A failed send is
fatal on purpose: the batch stays uncommitted and the worker exits loudly (its supervisor restarts it).

Backpressure: while a processor cannot make progress (its backend is down) it calls ``wait(seconds)``
instead of sleeping. That pauses every assigned partition and keeps polling, so the consumer stays in
its group (``max.poll.interval.ms``) but fetches nothing; records a rebalance hands over meanwhile are
kept for the next batch. The partitions resume when the processor returns.

A commit can fail when a rebalance moved a partition away mid-batch; the new owner re-reads from the
last commit, so that is logged and the loop goes on (duplicates, never loss).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from pipeline.errors import BrokerError
from pipeline.intake import RawRecord
from pipeline.kafka.clients import make_consumer, make_producer, start_client
from pipeline.metrics import Metrics
from pipeline.policy.store import PolicyStore
from pipeline.records import Record
from pipeline.settings import Settings

log = logging.getLogger(__name__)

Wait = Callable[[float], Awaitable[None]]
"""``await wait(seconds)``: back off while consumption is paused."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to publish: the topic role (a key of ``TopicNames.all()``), the key and encoded value,
    and the record itself so the processor can account for it once it is acknowledged."""

    role: str
    key: bytes | None
    value: bytes
    record: Record


class _Abandoned(Exception):
    """Stop was asked for while the processor was backing off: the batch is dropped uncommitted."""


class BatchProcessor(ABC):
    """What a worker plugs into :class:`StreamLoop`."""

    @abstractmethod
    async def process(self, records: Sequence[RawRecord], wait: Wait) -> Sequence[Outgoing]:
        """The outputs of one batch; call ``await wait(seconds)`` to back off while a dependency is down."""

    @abstractmethod
    def published(self, outputs: Sequence[Outgoing]) -> None:
        """Called once ``outputs`` are acknowledged and the batch is committed (metrics, bookkeeping)."""


@dataclass(frozen=True, slots=True)
class Batching:
    """A batch closes at ``max_records`` records or ``max_wait_s`` after its first record, whichever first."""

    max_records: int = 256
    max_wait_s: float = 0.05
    idle_poll_s: float = 0.1
    """How long one poll waits while no batch is open (bounds how fast ``stop`` is noticed)."""


class StreamLoop:
    """Runs ``processor`` over the records of ``consumer`` (started, subscribed, auto-commit off) and
    publishes its outputs with ``producer`` (started, acks=all) to ``topics[role]``. ``on_assigned`` is called
    once, when the group first hands this consumer partitions (the worker is then really ready)."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        processor: BatchProcessor,
        topics: Mapping[str, str],
        *,
        batching: Batching,
        metrics: Metrics | None = None,
        on_assigned: Callable[[], None] | None = None,
    ) -> None:
        self.consumer = consumer
        self._on_assigned = on_assigned
        self.producer = producer
        self.processor = processor
        self.topics = dict(topics)
        self.batching = batching
        self.metrics = metrics
        self._held: list[ConsumerRecord[bytes, bytes]] = []  # read while paused; first in the next batch
        self._stop: asyncio.Event | None = None
        self.batches = 0
        self.records = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set; the batch in progress is finished and committed first,
        unless the processor is backing off (its backend is down): that batch is left uncommitted, for the
        group to re-read, so a stop never waits on an outage."""
        self._stop = stop
        while not stop.is_set():
            batch = await self._gather(stop)
            if batch:
                try:
                    await self.run_batch(batch)
                except _Abandoned:
                    log.warning("stopped while waiting for a backend: %d records left uncommitted, to be re-read",
                                len(batch))
                    return

    async def run_batch(self, batch: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        raws = [RawRecord(m.value, m.key, m.topic, m.partition, m.offset, m.timestamp) for m in batch]
        if self.metrics is not None:
            for topic in {m.topic for m in batch}:
                self.metrics.records_consumed.labels(topic=topic).inc(sum(1 for m in batch if m.topic == topic))
        outputs = await self.processor.process(raws, self._paused_wait)
        self._resume()
        await self._publish(outputs)
        await self._commit(batch)
        self.processor.published(outputs)
        self.batches += 1
        self.records += len(batch)

    async def _gather(self, stop: asyncio.Event) -> list[ConsumerRecord[bytes, bytes]]:
        batch, self._held = self._held, []
        limit = self.batching.max_records
        deadline = time.monotonic() + self.batching.max_wait_s if batch else None
        while len(batch) < limit:
            if deadline is None:
                if stop.is_set():
                    break
                timeout = self.batching.idle_poll_s
            else:
                timeout = max(0.0, deadline - time.monotonic())
            fetched = await self.consumer.getmany(timeout_ms=int(timeout * 1000), max_records=limit - len(batch))
            if self._on_assigned is not None and self.consumer.assignment():
                self._on_assigned()
                self._on_assigned = None
            for records in fetched.values():
                batch.extend(records)
            if batch and deadline is None:
                deadline = time.monotonic() + self.batching.max_wait_s
            if deadline is None:
                break  # idle: hand control back so the caller can check ``stop``
            if time.monotonic() >= deadline:
                break
        return batch

    async def _paused_wait(self, seconds: float) -> None:
        # Re-pause on every call: a rebalance during the outage may have assigned new partitions.
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.pause(*assignment)
        started = time.monotonic()
        deadline = started + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stop is not None and self._stop.is_set():
                raise _Abandoned
            fetched = await self.consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000) or 1)
            for records in fetched.values():
                self._held.extend(records)
            newly = self.consumer.assignment() - self.consumer.paused()
            if newly:
                self.consumer.pause(*newly)
        if self.metrics is not None:
            self.metrics.backpressure_seconds.inc(time.monotonic() - started)

    def _resume(self) -> None:
        paused = self.consumer.paused()
        if paused:
            self.consumer.resume(*paused)

    async def _publish(self, outputs: Sequence[Outgoing]) -> None:
        try:
            pending = [await self.producer.send(self.topics[o.role], o.value, key=o.key) for o in outputs]
            await asyncio.gather(*pending)
        except KafkaError as exc:
            raise BrokerError(f"publishing {len(outputs)} outputs failed ({type(exc).__name__}: {exc}); the batch "
                              "was not committed and will be re-read: check the broker") from exc

    async def _commit(self, batch: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for m in batch:
            tp = TopicPartition(m.topic, m.partition)
            offsets[tp] = max(offsets.get(tp, 0), m.offset + 1)
        owned = self.consumer.assignment()
        if lost := [tp for tp in offsets if tp not in owned]:
            log.warning("partitions %s were reassigned mid-batch; their new owner re-reads those records",
                        ", ".join(f"{tp.topic}[{tp.partition}]" for tp in lost))
            offsets = {tp: offset for tp, offset in offsets.items() if tp in owned}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit of %d records failed after a rebalance (%s); their new owner re-reads them",
                        len(batch), type(exc).__name__)


@dataclass(frozen=True)
class StreamReport:
    batches: int
    records: int


async def run_stream(
    settings: Settings,
    processor: BatchProcessor,
    store: PolicyStore,
    stop: asyncio.Event,
    *,
    source_role: str,
    group_id: str,
    batching: Batching,
    metrics: Metrics,
    name: str,
    on_assigned: Callable[[], None] | None = None,
    also_watch: Sequence[PolicyStore] = (),
) -> StreamReport:
    """What every worker does around its processor: clients for ``topics[source_role]`` in ``group_id``, the
    policy file (and ``also_watch``'s, e.g. a shadow policy) watched for hot reload, the :class:`StreamLoop`
    until ``stop``; everything closed after.

    The watcher and the loop share a task group: if the watcher dies, the worker stops loudly instead of
    running on with a policy that no longer follows its file.
    """
    topics = settings.topics.all()
    consumer = make_consumer(settings, topics[source_role], group_id=group_id)
    producer = make_producer(settings)
    await start_client(producer, settings, f"{name} producer")
    try:
        await start_client(consumer, settings, f"{name} consumer")
        loop = StreamLoop(consumer, producer, processor, topics, metrics=metrics, on_assigned=on_assigned,
                          batching=batching)
        watch_stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                for i, watched in enumerate((store, *also_watch)):
                    group.create_task(watched.watch(watch_stop), name=f"{name}-policy-watch-{i}")
                try:
                    await loop.run(stop)
                finally:
                    watch_stop.set()
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None
        return StreamReport(loop.batches, loop.records)
    finally:
        await consumer.stop()
        await producer.stop()
