"""Produce records and read topics back: the toolkit of the CLI's ``produce``/``tail``, the main job, the
benchmarks and the broker tests.

    sent = await produce(settings, topic, jsonl_records(path))          # publish, await every ack
    async with TopicReader.open(settings, [verdicts, dead_letter]) as reader:
        everything = await reader.read_to_end()                         # what the topics hold now
        outputs = await reader.read_until(lambda seen: len(seen) >= n, timeout_s=30, quiet_s=1.0)
    missed = await read_range(settings, topic, partition, 100, 120)      # offsets 100..119 of one partition

Publishing: :func:`send_all` sends ``(key, value)`` pairs on a started producer (optionally paced at a rate)
and awaits their acknowledgements in chunks, so a long stream never holds more than ``max_pending`` futures;
:func:`produce` does the same with a producer of its own. :func:`jsonl_records` turns a JSONL file into such
pairs, keyed by the post id where a line has one (:func:`key_of`).

Reading: a :class:`TopicReader` is a group-less consumer assigned every partition of its topics (it joins no
group, so it commits nothing and starts in milliseconds), positioned at the beginning or at the current end.
Its reads keep what they returned in :attr:`TopicReader.messages` too, so a caller that timed out can still
report what arrived.

End offsets: tansu (the embedded broker) answers ListOffsets(latest) with the base offset of a partition's last
record batch, not the high watermark, so listed end offsets under-count. :meth:`TopicReader.read_to_end` takes
each partition's end from the high watermark that fetch responses carry instead (as the batch topic source
does), which is right on Kafka and on tansu alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from pipeline import codec
from pipeline.errors import BrokerError
from pipeline.kafka.clients import make_consumer, make_producer, start_client
from pipeline.settings import Settings

Message: TypeAlias = ConsumerRecord[bytes, bytes]
Keyed: TypeAlias = tuple[bytes | None, bytes]
"""A record to publish: (key, value)."""

MAX_PENDING = 10_000
"""Sends in flight before :func:`send_all` awaits their acknowledgements."""


def key_of(value: bytes) -> bytes | None:
    """The post id of a JSON post as a key; None when the value is not a JSON object with an ``id``."""
    try:
        obj = codec.loads(value)
    except Exception:  # an unreadable line is still published; the worker dead-letters it
        return None
    if isinstance(obj, dict) and isinstance(obj.get("id"), str | int):
        return str(obj["id"]).encode()
    return None


def keyed(values: Iterable[bytes]) -> Iterator[Keyed]:
    """Each value with its post id as the key (:func:`key_of`)."""
    for value in values:
        yield key_of(value), value


def jsonl_records(path: Path) -> Iterator[Keyed]:
    """Every non-blank line of a JSONL file as it is (line ending stripped), keyed by its post id when readable."""
    with path.open("rb") as lines:
        for line in lines:
            value = line.rstrip(b"\r\n")
            if value.strip():
                yield key_of(value), value


async def send_all(producer: AIOKafkaProducer, topic: str, records: Iterable[Keyed], *,
                   rate_per_s: float | None = None, max_pending: int = MAX_PENDING) -> int:
    """Send ``records`` to ``topic`` in order (record ``i`` not before ``i / rate_per_s`` s when a rate is given)
    and await every acknowledgement; returns how many were sent. ``records`` is consumed lazily, so a
    generator sees each record go out right after it yields it."""
    pending: list[Awaitable[object]] = []
    started = time.monotonic()
    count = 0
    iterator = iter(records)
    while True:
        if rate_per_s is not None and (ahead := count / rate_per_s - (time.monotonic() - started)) > 0:
            await asyncio.sleep(ahead)  # before taking the record: a generator stamps it as it goes out
        try:
            key, value = next(iterator)
        except StopIteration:
            break
        pending.append(await producer.send(topic, value, key=key))
        count += 1
        if len(pending) >= max_pending:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return count


async def produce(settings: Settings, topic: str, records: Iterable[Keyed], *, rate_per_s: float | None = None,
                  client: str = "producer", **overrides: Any) -> int:
    """:func:`send_all` with a producer of its own (``settings``' acks and idempotence, ``overrides`` on top),
    stopped afterwards. ``client`` names it in a :class:`~pipeline.errors.BrokerError`."""
    producer = make_producer(settings, **overrides)
    await start_client(producer, settings, client)
    try:
        return await send_all(producer, topic, records, rate_per_s=rate_per_s)
    finally:
        await producer.stop()


def _read_limit(settings: Settings, timeout_s: float | None) -> float:
    """How long a read to a known offset may take: ``timeout_s``, else the request timeout, at least 30 s."""
    return timeout_s if timeout_s is not None else max(settings.kafka.request_timeout_ms / 1000, 30.0)


class TopicReader:
    """Every partition of ``topics`` on one group-less consumer. Build it with :meth:`open`."""

    def __init__(self, consumer: AIOKafkaConsumer, settings: Settings, topics: Sequence[str]) -> None:
        self.consumer = consumer
        self.topics = tuple(topics)
        self.messages: list[Message] = []
        """Everything the reads returned so far, in the order they returned it."""
        self._settings = settings

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings, topics: Sequence[str], *, start: Literal["beginning", "end"] = "beginning",
                   client: str = "topic reader", **overrides: Any) -> AsyncIterator[TopicReader]:
        """A reader positioned at the beginning of every partition, or at its current end (``start="end"``: it
        then sees only what is published after this returns). Stopped on exit."""
        consumer = make_consumer(settings, group_id=None, **overrides)
        await start_client(consumer, settings, client)
        try:
            await consumer.topics()  # fetches the metadata
            missing = [t for t in topics if not consumer.partitions_for_topic(t)]
            if missing:
                raise BrokerError(f"topic(s) {', '.join(missing)} do not exist on {settings.bootstrap}: create them "
                                  "(`modcascade broker` does) or check the names")
            consumer.assign([TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))])
            reader = cls(consumer, settings, topics)
            if start == "beginning":
                await consumer.seek_to_beginning()
            else:
                # The listed end can be short on tansu (see the module docstring): read on to the real end.
                await consumer.seek_to_end()
                await reader.read_to_end()
                reader.messages.clear()
            yield reader
        finally:
            await consumer.stop()

    async def fetch(self, timeout_s: float = 0.2, max_records: int | None = None) -> list[Message]:
        """One fetch: what arrives within ``timeout_s`` (empty when nothing did), partition by partition."""
        fetched = await self.consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        batch = [m for records in fetched.values() for m in records]
        self.messages.extend(batch)
        return batch

    async def read_until(self, done: Callable[[list[Message]], bool], *, timeout_s: float, quiet_s: float = 0.0,
                         poll_s: float = 0.2) -> list[Message]:
        """Read until ``done(self.messages)`` holds and then nothing more arrives for ``quiet_s`` (so late
        duplicates show up); returns :attr:`messages`. ``TimeoutError`` after ``timeout_s`` (:attr:`messages`
        keeps what arrived)."""
        async with asyncio.timeout(timeout_s):
            while not done(self.messages):
                await self.fetch(poll_s)
            if quiet_s > 0:
                while await self.fetch(quiet_s):
                    pass
        return self.messages

    async def read_count(self, count: int, *, timeout_s: float = 15.0) -> list[Message]:
        """Read until :attr:`messages` holds at least ``count`` records; ``TimeoutError`` after ``timeout_s``."""
        return await self.read_until(lambda seen: len(seen) >= count, timeout_s=timeout_s)

    async def read_to_end(self, *, timeout_s: float | None = None) -> list[Message]:
        """Read every partition up to the end it had when this call began, its high watermark as fetches report
        it (see the module docstring); returns what this call read. A :class:`~pipeline.errors.BrokerError`
        when the broker does not get there within ``timeout_s`` (default: the request timeout, at least 30 s)."""
        limit = _read_limit(self._settings, timeout_s)
        first = len(self.messages)
        ends: dict[TopicPartition, int] = {}
        left = set(self.consumer.assignment())
        try:
            async with asyncio.timeout(limit):
                while left:
                    await self.fetch(0.1)
                    for tp in list(left):
                        highwater = self.consumer.highwater(tp)
                        if highwater is None:
                            continue  # no fetch answer for this partition yet
                        end = ends.setdefault(tp, highwater)
                        if await self.consumer.position(tp) >= end:
                            left.discard(tp)
        except TimeoutError as exc:
            behind = sorted(f"{tp.topic}[{tp.partition}]" for tp in left)
            raise BrokerError(f"reading {', '.join(self.topics)} to the end: {', '.join(behind)} not there within "
                              f"{limit:g} s from {self._settings.bootstrap}; is the broker overloaded?") from exc
        return self.messages[first:]


async def read_range(settings: Settings, topic: str, partition: int, start: int, end: int, *,
                     timeout_s: float | None = None, client: str = "range reader") -> list[Message]:
    """The records of one partition at offsets ``start`` up to (not including) ``end``, read by a group-less
    consumer of their own; offsets in between that hold no record (deleted by retention, transaction markers) are
    simply absent. ``end`` must be an offset the partition holds (the read stops on reaching it). A
    :class:`~pipeline.errors.BrokerError` when the broker does not get there within ``timeout_s`` (default: the
    request timeout, at least 30 s)."""
    if start >= end:
        return []
    limit = _read_limit(settings, timeout_s)
    tp = TopicPartition(topic, partition)
    consumer = make_consumer(settings, group_id=None, auto_offset_reset="earliest")
    await start_client(consumer, settings, client)
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        records: list[Message] = []
        async with asyncio.timeout(limit):
            while await consumer.position(tp) < end:
                fetched = await consumer.getmany(tp, timeout_ms=100)
                records += [m for m in fetched.get(tp, ()) if start <= m.offset < end]
        return records
    except TimeoutError as exc:
        raise BrokerError(f"reading {topic}[{partition}] offsets {start}..{end - 1}: not there within {limit:g} s "
                          f"from {settings.bootstrap}; is the broker overloaded?") from exc
    finally:
        await consumer.stop()


async def read_to_end(settings: Settings, topics: Sequence[str], *, timeout_s: float | None = None,
                      client: str = "topic reader") -> list[Message]:
    """Every record ``topics`` hold now, from the beginning (:meth:`TopicReader.read_to_end`)."""
    async with TopicReader.open(settings, topics, client=client) as reader:
        return await reader.read_to_end(timeout_s=timeout_s)
