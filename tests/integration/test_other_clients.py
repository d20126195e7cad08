"""Clients in other languages: producers of posts and consumers of verdicts built on librdkafka (the C client
behind confluent-kafka-python, confluent-kafka-go, rdkafka-ruby, node-rdkafka, ...), here through the
``confluent-kafka`` wheel, against the same broker the workers use (the embedded one, or Kafka with
KAFKA_BOOTSTRAP). docs/clients.md lists the versions seen working and the settings a consumer group needs.

librdkafka's calls block, so they run in a thread; the classify worker runs in this event loop meanwhile.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer
from prometheus_client import CollectorRegistry

from pipeline.backends.fake import FakeClassifier
from pipeline.metrics import Metrics
from pipeline.services import run_classify_worker
from pipeline.settings import Settings
from tests.support.cascade import REPO, assert_accounted, cascade_settings, collect, make_stream
from tests.support.kafka import unique

pytestmark = pytest.mark.broker

LABELS = ("safe", "spam", "harassment", "hate", "sexual", "violence", "self_harm")
JOIN_GOAL_S = 10.0
"""A librdkafka consumer group with the settings of :func:`group_config` gets its first record within this."""


def client_config(settings: Settings) -> dict[str, Any]:
    """librdkafka settings every client needs here: the broker, and idempotence only where the broker has it
    (tansu refuses InitProducerId; librdkafka >= 2.x would otherwise turn idempotence on by itself)."""
    return {"bootstrap.servers": settings.bootstrap, "client.id": unique("librdkafka"),
            "enable.idempotence": settings.idempotence}


def group_config(settings: Settings, group_id: str) -> dict[str, Any]:
    """A consumer group that joins in seconds. tansu delays a first join by about half the session timeout, and
    librdkafka's default session is 45 s; Kafka refuses sessions under group.min.session.timeout.ms (6 s).
    ``group.protocol=consumer`` (KIP-848) does not work on tansu: the member never gets an assignment."""
    session_ms = 3000 if settings.uses_embedded_broker else 6000
    return {**client_config(settings), "group.id": group_id, "group.protocol": "classic",
            "session.timeout.ms": session_ms, "heartbeat.interval.ms": session_ms // 6,
            "auto.offset.reset": "earliest", "enable.auto.commit": False}


def produce_with_librdkafka(settings: Settings, topic: str, records: Sequence[tuple[bytes, bytes]]) -> list[str]:
    """Publish with acks=all and wait for every delivery report; the errors reported (empty: all delivered)."""
    producer = Producer({**client_config(settings), "acks": "all", "linger.ms": 5})
    errors: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(30)
    assert left == 0, f"{left} records not delivered within 30 s"
    return errors


def consume_group(settings: Settings, group_id: str, topics: Sequence[str], want: int,
                  timeout_s: float) -> tuple[list[bytes], float | None]:
    """Subscribe a librdkafka consumer in ``group_id``, read until ``want`` records came (or ``timeout_s``),
    commit synchronously, close. Returns the keys read and the seconds until the first record (None: none)."""
    consumer = Consumer(group_config(settings, group_id))
    keys: list[bytes] = []
    first: float | None = None
    started = time.monotonic()
    try:
        consumer.subscribe(list(topics))
        while len(keys) < want and time.monotonic() - started < timeout_s:
            message = consumer.poll(0.2)
            if message is None:
                continue
            assert message.error() is None, message.error()
            if first is None:
                first = time.monotonic() - started
            keys.append(message.key() or b"")
        if keys:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()  # leaves the group at once, so the next member does not wait for a session to expire
    return keys, first


@pytest.fixture
async def settings(kafka_settings: Settings, _session_topics: list[str], tmp_path: Path) -> Settings:
    policy = tmp_path / "policy.yaml"
    shutil.copy(REPO / "policies" / "default.yaml", policy)
    return await cascade_settings(kafka_settings, policy, _session_topics, batch_max_posts=200, batch_max_wait_ms=20)


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[asyncio.Task[object]]:
    """The classify worker (fake classifier) in this event loop, stopped gracefully after the test."""
    stop = asyncio.Event()
    task: asyncio.Task[object] = asyncio.create_task(run_classify_worker(
        settings, stop, classifier=FakeClassifier(LABELS), metrics=Metrics.create(CollectorRegistry())))
    yield task
    stop.set()
    await asyncio.wait_for(task, timeout=30)


async def test_posts_published_with_librdkafka_all_come_out_as_verdicts_or_dead_letters(
    settings: Settings, worker: asyncio.Task[object]
) -> None:
    stream = make_stream(1500, malformed_every=50, prefix="rdk")
    errors = await asyncio.to_thread(produce_with_librdkafka, settings, settings.topics.all()["posts"],
                                     stream.records)
    assert not errors, errors[:5]

    out = await collect(settings, stream, timeout_s=60)

    assert not worker.done(), worker
    assert_accounted(stream, out, duplicates_allowed=False)
    assert len(stream.malformed_keys) == 30 and len(out.dead_letters) == 30
    assert {v.post_id for v in out.verdicts} | {r.post.id for r in out.requests} == stream.valid_ids


async def test_a_librdkafka_consumer_group_reads_verdicts_within_seconds_and_resumes_from_its_commit(
    settings: Settings, worker: asyncio.Task[object]
) -> None:
    topics = settings.topics.all()
    first_posts = make_stream(300, malformed_every=10_000, prefix="first")
    assert not await asyncio.to_thread(produce_with_librdkafka, settings, topics["posts"], first_posts.records)
    await collect(settings, first_posts, timeout_s=60)  # the worker has decided every one of them
    outputs = [topics["verdicts"], topics["adjudication"]]
    group = unique("librdkafka-group")

    keys, first_after = await asyncio.to_thread(consume_group, settings, group, outputs, len(first_posts.valid_ids),
                                                JOIN_GOAL_S + 20)

    assert first_after is not None and first_after < JOIN_GOAL_S, \
        f"the first record came after {first_after} s: the group join is too slow (see docs/clients.md)"
    assert sorted(k.decode() for k in keys) == sorted(first_posts.valid_ids)

    later = make_stream(5, malformed_every=10_000, prefix="later")
    assert not await asyncio.to_thread(produce_with_librdkafka, settings, topics["posts"], later.records)
    await collect(settings, later, timeout_s=30)
    # A new member of the same group starts from the committed offsets: only the later posts' outputs.
    resumed, _ = await asyncio.to_thread(consume_group, settings, group, outputs, len(later.valid_ids),
                                         JOIN_GOAL_S + 20)
    assert sorted(k.decode() for k in resumed) == sorted(later.valid_ids)
    assert not worker.done(), worker


def test_librdkafka_reports_its_version() -> None:
    """docs/clients.md names the versions seen working; this fails when the installed one changes under it."""
    import confluent_kafka

    documented = (REPO / "docs" / "clients.md").read_text()
    assert f"confluent-kafka {confluent_kafka.version()[0]}" in documented
    assert f"librdkafka {confluent_kafka.libversion()[0]}" in documented
