"""Find out which Kafka features the configured broker supports, by trying them on scratch topics.

Each check really uses the feature (no version sniffing), is bounded by a timeout and closes its clients;
scratch topics are deleted at the end. A feature that fails is *data* (``supported=False`` with the
reason); only a broker that cannot be reached at all raises :class:`~pipeline.errors.BrokerError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pipeline.kafka.clients import make_admin, make_consumer, make_producer
from pipeline.kafka.topics import delete_topics, ensure_topics
from pipeline.settings import Settings

MESSAGE_SIZES = (1_000_000, 5_000_000)
REBALANCE_PARTITIONS = 4
# Short group timeouts so a join or a leave is noticed in seconds, not the defaults' tens of seconds.
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 200, "rebalance_timeout_ms": 5000}


@dataclass(frozen=True, slots=True)
class FeatureResult:
    """Whether the broker supports a feature, and what was seen (one line, for humans)."""

    supported: bool
    detail: str
    seconds: float = 0.0


class _Progress:
    """What a check is doing now, so a timeout can say where it got stuck."""

    def __init__(self) -> None:
        self.stage = "starting"


@dataclass(frozen=True, slots=True)
class _Scratch:
    settings: Settings
    prefix: str

    def topic(self, name: str) -> str:
        return f"{self.prefix}-{name}"


Check = Callable[[_Scratch, _Progress], Awaitable[tuple[bool, str]]]


async def probe_features(
    settings: Settings, *, timeout_s: float = 30.0, message_sizes: tuple[int, ...] = MESSAGE_SIZES
) -> dict[str, FeatureResult]:
    """Try each feature against ``settings.bootstrap``; keys: ``idempotent_producer``, ``transactions``,
    ``consumer_group_rebalance``, ``compacted_topic``, ``max_message_size``. Each check gets ``timeout_s``."""
    scratch = _Scratch(settings, f"modcascade-probe-{uuid.uuid4().hex[:8]}")
    plain = [scratch.topic(n) for n in ("idempotence", "transactions", "sizes")]
    await ensure_topics(settings, plain, partitions=1)  # raises BrokerError when Kafka is unreachable
    await ensure_topics(settings, [scratch.topic("rebalance")], partitions=REBALANCE_PARTITIONS)
    checks: dict[str, Check] = {
        "idempotent_producer": _idempotent_producer,
        "transactions": _transactions,
        "consumer_group_rebalance": _consumer_group_rebalance,
        "compacted_topic": _compacted_topic,
        "max_message_size": lambda s, p: _max_message_size(s, p, message_sizes),
    }
    try:
        return {name: await _run(check, scratch, timeout_s) for name, check in checks.items()}
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await delete_topics(settings, [*plain, scratch.topic("rebalance"), scratch.topic("compact")])


async def _run(check: Check, scratch: _Scratch, timeout_s: float) -> FeatureResult:
    progress = _Progress()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            supported, detail = await check(scratch, progress)
    except TimeoutError:
        supported, detail = False, f"no answer within {timeout_s:g} s while {progress.stage}"
    except Exception as exc:  # a failing feature is a result, not a crash
        supported, detail = False, f"{progress.stage} failed: {_describe(exc)}"
    return FeatureResult(supported, detail, round(time.perf_counter() - started, 2))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


async def _idempotent_producer(scratch: _Scratch, progress: _Progress) -> tuple[bool, str]:
    producer = make_producer(scratch.settings, enable_idempotence=True, acks="all")
    try:
        progress.stage = "starting an idempotent producer (InitProducerId)"
        await producer.start()
        progress.stage = "sending with an idempotent producer"
        meta = await producer.send_and_wait(scratch.topic("idempotence"), b"probe", key=b"probe")
    finally:
        await producer.stop()
    return True, f"an idempotent producer's send was acknowledged (offset {meta.offset})"


async def _transactions(scratch: _Scratch, progress: _Progress) -> tuple[bool, str]:
    topic = scratch.topic("transactions")
    producer = make_producer(scratch.settings, transactional_id=f"{scratch.prefix}-tx",
                             enable_idempotence=True, acks="all")
    try:
        progress.stage = "starting a transactional producer (InitProducerId)"
        await producer.start()
        progress.stage = "beginning a transaction"
        await producer.begin_transaction()
        progress.stage = "sending in a transaction"
        await producer.send_and_wait(topic, b"probe", key=b"probe")
        progress.stage = "committing a transaction"
        await producer.commit_transaction()
    finally:
        await producer.stop()
    progress.stage = "reading the committed record with isolation_level=read_committed"
    values = await _read(make_consumer(scratch.settings, topic, group_id=None, isolation_level="read_committed"), 1)
    if values != [b"probe"]:
        return False, f"committed, but a read_committed consumer saw {len(values)} records instead of 1"
    return True, "begin/send/commit succeeded and a read_committed consumer saw the record"


async def _consumer_group_rebalance(scratch: _Scratch, progress: _Progress) -> tuple[bool, str]:
    topic, group = scratch.topic("rebalance"), f"{scratch.prefix}-group"
    first = make_consumer(scratch.settings, topic, group_id=group, **FAST_GROUP)
    second = make_consumer(scratch.settings, topic, group_id=group, **FAST_GROUP)
    try:
        progress.stage = "waiting for the first consumer to join the group"
        started = time.perf_counter()
        await first.start()
        await _poll_until(lambda: len(first.assignment()) == REBALANCE_PARTITIONS, first)
        join_s = time.perf_counter() - started

        progress.stage = "waiting for a second consumer to get partitions"
        started = time.perf_counter()
        await second.start()
        await _poll_until(lambda: _shared(first, second), first, second)
        shared_s, got = time.perf_counter() - started, len(second.assignment())

        progress.stage = "waiting for the first consumer to take all partitions back after the second left"
        started = time.perf_counter()
        await second.stop()
        await _poll_until(lambda: len(first.assignment()) == REBALANCE_PARTITIONS, first)
        back_s = time.perf_counter() - started
    finally:
        await second.stop()
        await first.stop()
    return True, (
        f"a second consumer got {got} of {REBALANCE_PARTITIONS} partitions; when it left, the first got all "
        f"{REBALANCE_PARTITIONS} back (join {join_s:.1f} s, rebalance {shared_s:.1f} s, take-back {back_s:.1f} s)"
    )


def _shared(first: AIOKafkaConsumer, second: AIOKafkaConsumer) -> bool:
    mine, theirs = first.assignment(), second.assignment()
    return bool(mine) and bool(theirs) and not mine & theirs and len(mine | theirs) == REBALANCE_PARTITIONS


async def _poll_until(done: Callable[[], bool], *consumers: AIOKafkaConsumer) -> None:
    # Polling keeps each member inside max_poll_interval while the group settles.
    while not done():
        await asyncio.gather(*(c.getmany(timeout_ms=100) for c in consumers))


async def _compacted_topic(scratch: _Scratch, progress: _Progress) -> tuple[bool, str]:
    topic = scratch.topic("compact")
    progress.stage = "creating a topic with cleanup.policy=compact"
    await ensure_topics(scratch.settings, [topic], partitions=1, configs={topic: {"cleanup.policy": "compact"}})
    progress.stage = "reading the topic's cleanup.policy back"
    admin = make_admin(scratch.settings)
    try:
        await admin.start()
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    policy = _config_value(responses, topic, "cleanup.policy")
    if policy != "compact":
        return False, f"created, but the broker reports cleanup.policy={policy}"
    progress.stage = "sending keyed records to the compacted topic"
    producer = make_producer(scratch.settings)
    try:
        await producer.start()
        for value in (b"v1", b"v2"):
            await producer.send_and_wait(topic, value, key=b"probe")
    finally:
        await producer.stop()
    return True, "created; the broker reports cleanup.policy=compact and takes keyed records " \
                 "(compaction itself not observed)"


def _config_value(responses: list[Any], topic: str, key: str) -> str | None:
    for response in responses:
        for resource in response.resources:  # (error_code, error_message, type, name, config_entries)
            if resource[3] != topic:
                continue
            for entry in resource[4]:  # (name, value, read_only, ...)
                if entry[0] == key:
                    return str(entry[1])
    return None


async def _max_message_size(scratch: _Scratch, progress: _Progress, sizes: tuple[int, ...]) -> tuple[bool, str]:
    topic, limit = scratch.topic("sizes"), max(sizes) + 65_536
    accepted: list[int] = []
    rejected = ""
    producer = make_producer(scratch.settings, max_request_size=limit)
    try:
        progress.stage = "starting a producer"
        await producer.start()
        for size in sorted(sizes):
            progress.stage = f"sending a {_mb(size)} message"
            try:
                await producer.send_and_wait(topic, b"x" * size, key=b"probe")
            except Exception as exc:  # the broker's refusal is the answer
                rejected = f"; {_mb(size)} rejected: {_describe(exc)}"
                break
            accepted.append(size)
    finally:
        await producer.stop()
    if not accepted:
        return False, f"no size accepted{rejected}"
    progress.stage = "reading the large messages back"
    consumer = make_consumer(scratch.settings, topic, group_id=None, fetch_max_bytes=limit * 2,
                             max_partition_fetch_bytes=limit * 2)
    lengths = [len(v) for v in await _read(consumer, len(accepted))]
    if lengths != accepted:
        return False, f"accepted {', '.join(map(_mb, accepted))} but read back sizes {lengths}"
    return True, f"largest accepted: {_mb(accepted[-1])} (read back intact){rejected}"


def _mb(size: int) -> str:
    return f"{size / 1_000_000:g} MB"


async def _read(consumer: AIOKafkaConsumer, count: int) -> list[bytes]:
    """Start ``consumer``, read ``count`` values (callers bound the time), stop it."""
    values: list[bytes] = []
    try:
        await consumer.start()
        while len(values) < count:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return values

