"""The at-least-once batch loop every stream worker runs: consume → process → publish → await acks → commit.

    batch = gather(up to max_records, or max_wait after the first record entered Kafka)
    outputs = await processor.process(batch, wait)       # the library's logic; may back off via wait()
    send every output, then await all their acknowledgements (acks=all)
    commit the batch's offsets                             # only now: a crash before this re-reads the batch
    processor.published(outputs)                           # metrics, once the outputs are durable

Consecutive batches may overlap (``Batching.overlap``, the classify worker): while one batch's acknowledgements
and commit are awaited, the next is gathered and processed; its outputs are sent only once the batch before is
committed. So at most two batches are uncommitted at any time, commits stay in order, and each batch is still
committed only after its own outputs are acknowledged.

Why the offsets move only after the acknowledgements: a worker killed at any point (SIGKILL included)
either committed a batch whose outputs are all in Kafka, or did not commit it and the group re-reads
it. Outputs may then be published twice; consumers de-duplicate by ``verdict_id``. A send that fails for a
reason a retry may fix (the broker is down, a timeout) is fatal on purpose: the batch stays uncommitted and the
worker exits loudly (its supervisor restarts it), nothing is dropped.

Poison pills: an output the producer or the broker refuses for a reason no retry can fix (too large, an invalid
record: :data:`REFUSED`) would stop the worker at the same record after every restart. Instead it is replaced by
a bounded dead letter of the record it answers (``Outgoing.source``) that names the output's role, key, size and
the error; the dead letter is published in its place and the batch is committed as usual (every output, or its
replacement, acknowledged first). A broker refuses a whole batch of records at once, so each refused record is
sent again on its own first: only a record refused alone is replaced. Only when even the dead letter (tried once
more without the original bytes) is refused does the worker stop, naming the source record and the fix.
``processor.published`` gets the outputs as published: a replaced output is counted as its dead letter.

Backpressure: while a processor cannot make progress (its backend is down) it calls ``wait(seconds)``
instead of sleeping. That pauses every assigned partition and keeps polling, so the consumer stays in
its group (``max.poll.interval.ms``) but fetches nothing; records a rebalance hands over meanwhile are
kept for the next batch. The partitions resume when the processor returns.

Rebalances (a worker added, stopped or dead): the loop subscribes with a rebalance listener, so before
this worker gives its partitions up it finishes the batch in progress (publish, acks, commit, under the
generation that still owns them) and drops records it had read but not started on; the new owner
continues from the commit, and a rebalance among live workers publishes nothing twice. A batch that is
backing off (its backend is down) when the partitions go is dropped instead (nothing of it was published):
the rebalance never waits on an outage. A commit that still fails (the group moved on without this member)
is logged and the loop goes on: the new owner re-reads those records (duplicates, never loss).

After every rebalance, before the next fetch, the processor hears what it holds
(:meth:`~pipeline.stage.BatchProcessor.assigned`: its partitions of the source topic out of the total and, for a
stage with a ``state_role``, the latest values on that compacted topic): the adjudication stage splits its hourly
budget by it, so any number of replicas together keep the caps.

Consumer lag: after each fetch and commit, ``modcascade_consumer_lag{group,topic,partition}`` is set per
assigned partition to its high watermark minus the offset this worker committed (before its first commit
there: the position it started from, the group's committed offset); series of revoked partitions are removed.
A paused partition is not fetched, so its high watermark (and lag) is not refreshed while the backend is down.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    CorruptRecordException,
    IllegalStateError,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from pipeline.errors import BrokerError
from pipeline.intake import RawRecord
from pipeline.kafka.batched import send_batched
from pipeline.kafka.clients import make_consumer, make_producer, start_client
from pipeline.kafka.readback import TopicReader
from pipeline.metrics import Metrics
from pipeline.records import DEAD_LETTER_MAX_BYTES, DeadLetter
from pipeline.settings import Settings, check_message_sizes
from pipeline.stage import Assignment, BatchProcessor, Outgoing, dead_letter

log = logging.getLogger(__name__)

_TOO_LARGE: tuple[type[KafkaError], ...] = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)
REFUSED: tuple[type[KafkaError], ...] = (*_TOO_LARGE, CorruptRecordException, InvalidTimestampError)
"""Errors that refuse one record for good: the producer's size check (MessageSizeTooLargeError, raised by ``send``)
and the broker's MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE, CORRUPT_MESSAGE (an invalid record, e.g. a record
without a key on a compacted topic) and INVALID_TIMESTAMP. Not ``not error.retriable``: aiokafka marks
KafkaTimeoutError and BrokerNotAvailableError non-retriable too, and those are transient; topic-wide refusals
(unknown or invalid topic, authorization) would refuse every output of a role, so they stop the worker instead
of turning the whole stream into dead letters."""


class _Abandoned(Exception):
    """Stop was asked for while the processor was backing off: the batch is dropped uncommitted."""


class _Dropped(Exception):
    """A rebalance took the partitions while the processor was backing off: the batch is dropped uncommitted
    (nothing of it was published) and its records are re-read by their owners."""


@dataclass(frozen=True, slots=True)
class Batching:
    """A batch closes at ``max_records`` records or ``max_wait_s`` after its first record entered Kafka (its
    timestamp; at most ``max_wait_s`` from when the loop saw it), whichever first."""

    max_records: int = 256
    max_wait_s: float = 0.05
    overlap: bool = False
    """Gather and process the next batch while this one's outputs are acknowledged and its offsets committed (the
    classify worker): a crash may then re-read two batches instead of one."""
    idle_poll_s: float = 0.1
    """How long one poll waits while no batch is open (bounds how fast ``stop`` is noticed)."""


class StreamLoop:
    """Runs ``processor`` over the records of ``consumer`` (started, auto-commit off) and publishes its outputs
    with ``producer`` (started, acks=all) to ``topics[role]``. Subscribe through :meth:`subscribe` so that
    rebalances finish the batch in progress first (a consumer subscribed elsewhere works, without that).
    ``on_assigned`` is called once, when the group first hands this consumer partitions (the worker is then
    really ready). ``group_id`` labels the consumer-lag metric. ``name`` is the worker's (a dead letter that
    replaces a refused output is from stage ``<name>.publish``); such a dead letter keeps at most
    ``dead_letter_max_bytes`` of its source record. ``batch_bytes`` is the producer's record batch size
    (``max_batch_size``; :func:`~pipeline.kafka.batched.send_batched`)."""

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
        group_id: str | None = None,
        name: str = "stream",
        dead_letter_max_bytes: int = DEAD_LETTER_MAX_BYTES,
        read_state: Callable[[str], Awaitable[Mapping[bytes, bytes]]] | None = None,
        batch_bytes: int = 16_384,
    ) -> None:
        self.consumer = consumer
        self.batch_bytes = batch_bytes
        self._read_state = read_state
        self._source: str | None = None
        self._assigning = asyncio.Event()  # set while no assignment is being handed to the processor
        self._assigning.set()
        self._assign_error: BaseException | None = None
        self.name = name
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self._on_assigned = on_assigned
        self.producer = producer
        self.processor = processor
        self.topics = dict(topics)
        self.batching = batching
        self.metrics = metrics
        self.group_id = group_id or ""
        self._gathering: list[ConsumerRecord[bytes, bytes]] = []  # read, not started on yet
        self._held: list[ConsumerRecord[bytes, bytes]] = []  # read while paused; first in the next batch
        self._stop: asyncio.Event | None = None
        self._settled = asyncio.Event()  # set while no batch is being processed or sent
        self._settled.set()
        self._finishing: asyncio.Task[None] | None = None  # the sent batch's acknowledgements and commit
        self._in_wait = False  # the processor is backing off, inside a paused poll
        self._revoking = False  # a rebalance waits for the batch in progress
        self._drop = False  # the batch in progress must be dropped (its partitions went while backing off)
        self._lag_base: dict[TopicPartition, int] = {}  # committed offset, or the position we started from
        self._lag_series: set[TopicPartition] = set()
        self.batches = 0
        self.records = 0

    def subscribe(self, *topics: str) -> None:
        """Subscribe the consumer to ``topics`` with this loop's rebalance listener (the first is the source the
        processor's :meth:`~pipeline.stage.BatchProcessor.assigned` hears about)."""
        self._source = topics[0] if topics else None
        self.consumer.subscribe(list(topics), listener=_Rebalance(self))

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set; the batch in progress is finished and committed first,
        unless the processor is backing off (its backend is down): that batch is left uncommitted, for the
        group to re-read, so a stop never waits on an outage."""
        self._stop = stop
        try:
            while not stop.is_set():
                batch = await self._gather(stop)
                if self._finishing is not None and self._finishing.done():
                    await self._finished()  # raises the error of the batch before, if it failed
                if batch:
                    try:
                        await self._start(batch)
                        if not self.batching.overlap:
                            await self._finished()
                    except _Abandoned:
                        log.warning("stopped while waiting for a backend: %d records left uncommitted, to be "
                                    "re-read", len(batch))
                        break  # the batch before, already sent, is still finished below
                    except _Dropped:
                        self._resume()
                        log.warning("partitions were reassigned while waiting for a backend: %d records dropped "
                                    "uncommitted (none published), their owners re-read them", len(batch))
        except BaseException:
            if self._finishing is not None:  # a crash: the batch before stays uncommitted (re-read), like this one
                self._finishing.cancel()
                await asyncio.wait({self._finishing})
                self._finishing = None
            raise
        else:
            await self._finished()  # the last batch's acknowledgements and commit
        finally:
            self._forget_lag(set(self._lag_series))

    async def run_batch(self, batch: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """One batch from start to commit: processed, every output acknowledged, the offsets committed."""
        await self._start(batch)
        await self._finished()

    async def _start(self, batch: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Process ``batch`` and send its outputs; their acknowledgements, the commit and ``published`` follow in
        :attr:`_finishing`, beside the loop gathering and processing the next batch. The batch before must be
        finished (acknowledged and committed) before this one's outputs are sent: at most one batch is awaiting
        its acknowledgements, and commits stay in order."""
        # aiokafka may hand out records of new partitions while the assignment listener still awaits (reading the
        # processor's state topic): no batch starts before the processor has heard what it holds. No revocation can
        # be waiting meanwhile (the coordinator is busy with this assignment), so this cannot deadlock a rebalance.
        await self._assigning.wait()
        if self._assign_error is not None:
            raise self._assign_error
        self._settled.clear()
        self._drop = False
        try:
            raws = [RawRecord(m.value, m.key, m.topic, m.partition, m.offset, m.timestamp) for m in batch]
            if self.metrics is not None:
                for topic in {m.topic for m in batch}:
                    self.metrics.records_consumed.labels(topic=topic).inc(sum(1 for m in batch if m.topic == topic))
            outputs = await self.processor.process(raws, self._paused_wait)
            self._resume()
            await self._finished()
            sent = await self._send(outputs)
            self._finishing = asyncio.create_task(self._finish(batch, sent), name=f"{self.name}-acks-and-commit")
        finally:
            self._settled.set()

    async def _finish(self, batch: Sequence[ConsumerRecord[bytes, bytes]], sent: _Sent) -> None:
        outputs = await self._acknowledged(sent)
        await self._commit(batch)
        self.processor.published(outputs)
        self.batches += 1
        self.records += len(batch)
        await self._update_lag()

    async def _finished(self) -> None:
        """Wait for the batch whose acknowledgements and commit are under way, if any; raise its error."""
        task = self._finishing
        if task is None:
            return
        try:
            await task
        finally:
            if self._finishing is task:
                self._finishing = None

    async def _gather(self, stop: asyncio.Event) -> list[ConsumerRecord[bytes, bytes]]:
        # ``_gathering`` is one list for the whole gather, so a rebalance can take records out of it in place.
        self._gathering[:], self._held = self._held, []
        batch = self._gathering
        limit = self.batching.max_records
        deadline = self._deadline(batch[0]) if batch else None
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
            self._note_fetched(fetched)
            await self._update_lag()
            if batch and deadline is None:
                deadline = self._deadline(batch[0])
            if deadline is None:
                break  # idle: hand control back so the caller can check ``stop``
            if time.monotonic() >= deadline:
                break
        # Handed over without an await in between: from here on a rebalance waits for this batch.
        gathered, self._gathering = list(batch), []
        return gathered

    def _deadline(self, first: ConsumerRecord[bytes, bytes]) -> float:
        """When a batch whose first record is ``first`` closes (``time.monotonic``): ``max_wait_s`` after that record
        entered Kafka (its timestamp), not after this gather began. Records that waited in the fetch buffer while
        the previous batch was processed have used their window up already; waiting ``max_wait_s`` more for them
        was pure latency. Never later than ``max_wait_s`` from now: a timestamp ahead of this clock changes nothing,
        an old one (a backlog, a producer clock behind) closes the batch with what the fetches already hold."""
        window = self.batching.max_wait_s
        if first.timestamp is not None and first.timestamp > 0:
            window = min(window, max(0.0, window - (time.time() - first.timestamp / 1000)))
        return time.monotonic() + window

    async def _paused_wait(self, seconds: float) -> None:
        # Re-pause on every call: a rebalance during the outage may have assigned new partitions.
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.pause(*assignment)
        started = time.monotonic()
        deadline = started + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                if self._stop is not None and self._stop.is_set():
                    raise _Abandoned
                if self._revoking or self._drop:
                    raise _Dropped
                self._in_wait = True
                try:
                    fetched = await self.consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000) or 1)
                finally:
                    self._in_wait = False
                for records in fetched.values():
                    self._held.extend(records)
                self._note_fetched(fetched)
                if self._drop:
                    raise _Dropped
                newly = self.consumer.assignment() - self.consumer.paused()
                if newly:
                    self.consumer.pause(*newly)
        finally:
            if self.metrics is not None:
                self.metrics.backpressure_seconds.inc(time.monotonic() - started)

    def _resume(self) -> None:
        paused = self.consumer.paused()
        if paused:
            self.consumer.resume(*paused)

    async def _publish(self, outputs: Sequence[Outgoing]) -> list[Outgoing]:
        """Send every output and await every acknowledgement; return the outputs as published (a refused one
        replaced by its dead letter). Raises :class:`BrokerError` when the batch must stay uncommitted."""
        return await self._acknowledged(await self._send(outputs))

    async def _send(self, outputs: Sequence[Outgoing]) -> _Sent:
        """Hand every output to the producer (all sent before any acknowledgement is awaited), as whole record
        batches per partition (:func:`~pipeline.kafka.batched.send_batched`)."""
        try:
            sent = await send_batched(self.producer, [(self.topics[out.role], out.key, out.value) for out in outputs],
                                      batch_bytes=self.batch_bytes, refusals=REFUSED)
        except KafkaError as exc:
            raise _publish_failed(len(outputs), exc) from exc
        return _Sent(outputs, sent.pending, sent.refused)

    async def _acknowledged(self, sent: _Sent) -> list[Outgoing]:
        """Await the acknowledgements of ``sent``; the outputs as published (see :meth:`_publish`)."""
        outputs, pending, refused = sent.outputs, sent.pending, sent.refused
        try:
            results = await asyncio.gather(*(future for _, future in pending), return_exceptions=True)
            batch_refused: list[int] = []
            for (indices, _), result in zip(pending, results, strict=True):
                if isinstance(result, REFUSED):
                    batch_refused.extend(indices)
                elif isinstance(result, BaseException):
                    raise result
            for i in batch_refused:  # the broker refuses whole batches: find the records it refuses on their own
                if (error := await self._send_alone(outputs[i])) is not None:
                    refused[i] = error
        except KafkaError as exc:
            raise _publish_failed(len(outputs), exc) from exc
        if not refused:
            return list(outputs)
        published = list(outputs)
        for i, error in refused.items():
            published[i] = await self._replace(outputs[i], error)
        return published

    async def _send_alone(self, out: Outgoing) -> KafkaError | None:
        """Send one output in a request of its own; the error if it is refused, None once it is acknowledged."""
        try:
            await (await self.producer.send(self.topics[out.role], out.value, key=out.key))
        except REFUSED as exc:
            return exc
        return None

    async def _replace(self, out: Outgoing, error: KafkaError) -> Outgoing:
        """Publish a dead letter in place of ``out``, which was refused for ``error``; stop loudly if even a dead
        letter without the original bytes is refused."""
        source = out.source
        size = len(out.value) + len(out.key or b"")
        key = (out.key or b"")[:80].decode("utf-8", "replace")
        too_large = isinstance(error, _TOO_LARGE)
        fix = ("raise MODCASCADE_KAFKA_MAX_REQUEST_SIZE and the topic's max.message.bytes together, or lower the "
               "limit that let this output grow (docs/message-sizes.md)" if too_large else
               "see the error; the output was built from the source record named here")
        message = (f"the {out.role} output (key {key!r}, {size} bytes) was refused ({type(error).__name__}: "
                   f"{error}); fix: {fix}")
        where = _where(source)
        log.warning("%s: %s; publishing a dead letter of %s instead", self.name, message, where)
        origin = source if source is not None else RawRecord(out.value, out.key)  # answers no record: keep itself
        raw = origin.value if origin.value is not None else b""
        last: KafkaError = error
        for keep in (self.dead_letter_max_bytes, 0):
            letter = DeadLetter.of(
                raw, stage=f"{self.name}.publish", error=error,
                reason="output_too_large" if too_large else "output_rejected", key=origin.key, topic=origin.topic,
                partition=origin.partition, offset=origin.offset, message=message, max_original_bytes=keep)
            replacement = dead_letter(letter, origin)
            try:
                refused = await self._send_alone(replacement)
            except KafkaError as exc:
                raise BrokerError(f"publishing the dead letter that replaces a refused {out.role} output of {where} "
                                  f"failed ({type(exc).__name__}: {exc}); the batch was not committed and will be "
                                  "re-read: check the broker") from exc
            if refused is None:
                return replacement
            last = refused
        log.error("%s: even a dead letter of %s was refused (%s: %s); stopping with the batch uncommitted",
                  self.name, where, type(last).__name__, last)
        raise BrokerError(
            f"cannot publish {where}: its {out.role} output was refused ({type(error).__name__}) and so was the dead "
            f"letter replacing it on topic {self.topics['dead_letter']!r} ({type(last).__name__}: {last}). The batch "
            "was not committed and the worker stops so that nothing is lost. Fix: the dead-letter topic must take "
            "records of MODCASCADE_KAFKA_MAX_REQUEST_SIZE (its max.message.bytes, its existence and this client's "
            "rights to write it) and MODCASCADE_KAFKA_MAX_REQUEST_SIZE must hold a dead letter "
            "(docs/message-sizes.md)") from last

    async def _commit(self, batch: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        last: dict[tuple[str, int], int] = {}  # plain tuples: a TopicPartition per record cost more than the rest
        for m in batch:
            where = (m.topic, m.partition)
            if m.offset >= last.get(where, -1):
                last[where] = m.offset
        offsets = {TopicPartition(topic, partition): offset + 1 for (topic, partition), offset in last.items()}
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
            return
        self._lag_base.update(offsets)

    # -- rebalances ---------------------------------------------------------------------------------

    async def _on_revoked(self, revoked: AbstractSet[TopicPartition]) -> None:
        """Before the partitions go: drop what was read but not started on, finish the batch in progress."""
        def kept(records: list[ConsumerRecord[bytes, bytes]]) -> list[ConsumerRecord[bytes, bytes]]:
            return [m for m in records if TopicPartition(m.topic, m.partition) not in revoked]

        before = len(self._gathering) + len(self._held)
        self._gathering[:] = kept(self._gathering)
        self._held = kept(self._held)
        if dropped := before - len(self._gathering) - len(self._held):
            log.info("rebalance: %d records read but not started on are left to the partitions' next owner", dropped)
        try:
            if not self._settled.is_set():
                if self._in_wait:  # backing off: the batch is dropped once the poll returns, never awaited here
                    self._drop = True
                else:
                    log.info("rebalance: finishing the batch in progress before giving up %d partitions",
                             len(revoked))
                    self._revoking = True
                    try:
                        await self._settled.wait()
                    finally:
                        self._revoking = False
            if (finishing := self._finishing) is not None:  # a sent batch: acknowledged and committed while ours
                self._revoking = True
                try:
                    await asyncio.wait({finishing})  # never raises here: a failed batch is the loop's to raise
                finally:
                    self._revoking = False
        finally:
            self._forget_lag(revoked)

    async def _partitions_assigned(self, assigned: AbstractSet[TopicPartition]) -> None:
        """After a rebalance, before the next fetch: tell the processor what it holds (and its state topic)."""
        source = self._source
        if source is None:
            return
        self._assigning.clear()  # before the first await: the loop holds its next batch until this is done
        try:
            total = len(self.consumer.partitions_for_topic(source) or ())
            held = frozenset(tp.partition for tp in assigned if tp.topic == source)
            role = self.processor.state_role
            state: Mapping[bytes, bytes] = {}
            if role is not None and self._read_state is not None:
                state = await self._read_state(self.topics[role])
            self.processor.assigned(Assignment(source, held, total, state))
            log.info("rebalance: %d of %d partitions of %s assigned", len(held), total, source)
        except Exception as exc:  # aiokafka only logs a listener's error: the loop raises it, the worker stops
            self._assign_error = exc
            raise
        finally:
            self._assigning.set()

    # -- consumer lag -------------------------------------------------------------------------------

    def _note_fetched(self, fetched: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]) -> None:
        for tp, records in fetched.items():
            if records and tp not in self._lag_base:
                self._lag_base[tp] = records[0].offset  # the position this worker started from on ``tp``

    async def _update_lag(self) -> None:
        """Set the lag of every assigned partition whose high watermark is known (a fetch has reported it)."""
        if self.metrics is None or self._revoking:  # partitions on their way out: forgotten once settled
            return
        assigned = self.consumer.assignment()
        self._forget_lag({tp for tp in self._lag_series if tp not in assigned})
        highwaters = {tp: hw for tp in assigned if (hw := self.consumer.highwater(tp)) is not None}
        for tp, highwater in highwaters.items():
            base = self._lag_base.get(tp)
            if base is None:
                # Fetched, nothing handed out yet: the position is still where this worker started.
                try:  # known once a fetch ran, so this returns at once; never wait here for a reset
                    base = self._lag_base[tp] = await asyncio.wait_for(self.consumer.position(tp), 0.1)
                except (IllegalStateError, TimeoutError):  # revoked meanwhile, or the position is being reset
                    continue
                if tp not in self.consumer.assignment():
                    continue
            self.metrics.consumer_lag.labels(self.group_id, tp.topic, str(tp.partition)).set(max(0, highwater - base))
            self._lag_series.add(tp)

    def _forget_lag(self, partitions: AbstractSet[TopicPartition]) -> None:
        for tp in partitions:
            self._lag_base.pop(tp, None)
            if tp in self._lag_series:
                self._lag_series.discard(tp)
                if self.metrics is not None:
                    self.metrics.consumer_lag.remove(self.group_id, tp.topic, str(tp.partition))


@dataclass(frozen=True, slots=True)
class _Sent:
    """A batch's outputs handed to the producer: each acknowledgement with the indices of the outputs it covers (a
    whole record batch), and the ones the producer refused at once."""

    outputs: Sequence[Outgoing]
    pending: list[tuple[tuple[int, ...], asyncio.Future[Any]]]
    refused: dict[int, KafkaError]


def _publish_failed(count: int, exc: KafkaError) -> BrokerError:
    return BrokerError(f"publishing {count} outputs failed ({type(exc).__name__}: {exc}); the batch was not "
                       "committed and will be re-read: check the broker")


def _where(source: RawRecord | None) -> str:
    if source is None:
        return "an output that answers no single record"
    return f"record {source.topic}[{source.partition}] at offset {source.offset}"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Lets :class:`StreamLoop` finish its batch before the group takes its partitions."""

    def __init__(self, loop: StreamLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: AbstractSet[TopicPartition]) -> None:
        await self._loop._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: AbstractSet[TopicPartition]) -> None:
        await self._loop._partitions_assigned(assigned)


Background = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""A task run beside the loop (``await task(loop_done)``); it should return once ``loop_done`` is set."""


@dataclass(frozen=True)
class StreamReport:
    batches: int
    records: int


async def run_stream(
    settings: Settings,
    processor: BatchProcessor,
    stop: asyncio.Event,
    *,
    source_role: str,
    group_id: str,
    batching: Batching,
    metrics: Metrics,
    name: str,
    on_assigned: Callable[[], None] | None = None,
    background: Sequence[Background] = (),
) -> StreamReport:
    """What every worker does around its processor: the message sizes checked (:func:`check_message_sizes`),
    clients for ``topics[source_role]`` in ``group_id``, the
    :class:`StreamLoop` until ``stop``, and the caller's ``background`` tasks (e.g. watching a policy file for
    hot reload) beside it; everything closed after.

    The background tasks and the loop share a task group: if one of them dies, the worker stops loudly
    instead of running on without it. Each is given an event that is set when the loop ends.
    """
    check_message_sizes(settings)
    topics = settings.topics.all()
    consumer = make_consumer(settings, group_id=group_id)  # subscribed by the loop, with its rebalance listener
    producer = make_producer(settings)
    await start_client(producer, settings, f"{name} producer")
    try:
        await start_client(consumer, settings, f"{name} consumer")
        loop = StreamLoop(consumer, producer, processor, topics, metrics=metrics, on_assigned=on_assigned,
                          batching=batching, group_id=group_id, name=name,
                          dead_letter_max_bytes=settings.dead_letter_max_bytes, batch_bytes=settings.kafka.batch_size,
                          read_state=lambda topic: read_latest(settings, topic))
        loop.subscribe(topics[source_role])
        freeze_startup_heap()
        loop_done = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                for i, task in enumerate(background):
                    group.create_task(task(loop_done), name=f"{name}-background-{i}")
                try:
                    await loop.run(stop)
                finally:
                    loop_done.set()
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None
        return StreamReport(loop.batches, loop.records)
    finally:
        await consumer.stop()
        await producer.stop()


def freeze_startup_heap() -> None:
    """Collect once, then take every object alive now (modules, pydantic schemas, clients, the policy) out of the
    cyclic collector's reach (``gc.freeze``), and let the youngest generation grow to :data:`GC_YOUNG_THRESHOLD`
    objects before it is collected.

    A batch allocates tens of thousands of objects that live until it is committed; they reach the oldest
    generation, and each full collection they trigger would walk the whole startup heap again: ~15 µs per post at
    2,000-post batches with the zero-cost classifier (BENCHMARKS.md, "Pipeline throughput"). The youngest generation
    is collected once its net count (tracked objects allocated minus freed) passes the threshold. At the default
    (700) and at 20,000 the collector ran over the objects of the two batches in flight (~40,000-60,000, all still
    alive) again and again: 124 collections, ~0.55 s, in a bench run of 60,000 worker posts, ~3 µs a post. Above
    what the batches in flight keep alive, steady streaming triggers none, and cyclic garbage is still collected
    once that many objects have piled up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


GC_YOUNG_THRESHOLD = 100_000
"""Net allocations (allocated minus freed) of tracked objects that start a collection of the youngest generation."""


async def read_latest(settings: Settings, topic: str) -> dict[bytes, bytes]:
    """The latest value of every key on ``topic`` (a compacted state topic), read to its end now; a key whose latest
    record is a tombstone is left out."""
    latest: dict[bytes, bytes] = {}
    async with TopicReader.open(settings, [topic], client=f"{topic} state reader") as reader:
        for message in await reader.read_to_end():
            if message.key is None:
                continue
            if message.value is None:
                latest.pop(message.key, None)
            else:
                latest[message.key] = message.value
    return latest
