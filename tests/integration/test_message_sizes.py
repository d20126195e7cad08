"""No record stops the stream (issue 16), on the real broker.

- Records of 0.5, 1, 2 and 10 MB among valid posts: the classify worker gives every valid post its output and every
  oversized record exactly one bounded dead letter, and keeps running (the fake classifier: the model is not what
  is under test).
- An output refused for a reason no retry fixes: the embedded broker enforces no record limits (measured: it takes
  a 10 MB record on a topic created with max.message.bytes=2000, and a record without a key on a compacted topic),
  so the refusal here is the producer's own (MessageSizeTooLargeError over max_request_size: non-retriable, the
  same error a Kafka broker answers). The stream loop replaces the output with a dead letter and goes on; when even
  the dead letter is refused, it stops naming the source record, with the batch uncommitted.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import CollectorRegistry

from pipeline import codec
from pipeline.backends.fake import FakeClassifier
from pipeline.errors import BrokerError
from pipeline.intake import RawRecord, read_post
from pipeline.kafka import delete_topics, ensure_topics, make_admin, make_consumer, make_producer
from pipeline.kafka.stream import Batching, StreamLoop, run_stream
from pipeline.metrics import Metrics
from pipeline.records import DeadLetter, Label, Post
from pipeline.services import run_classify_worker
from pipeline.settings import Settings
from pipeline.stage import BatchProcessor, Outgoing, Wait, dead_letter
from tests.support.cascade import REPO, assert_accounted, cascade_settings, collect, make_stream, publish
from tests.support.kafka import ProducerFactory, fast_group, read_records, unique

pytestmark = pytest.mark.broker

LABELS = ("safe", "spam", "harassment", "hate", "sexual", "violence", "self_harm")
MB = 1_000_000


def oversized(size: int, kind: str) -> bytes:
    """A record of exactly ``size`` bytes: a post with a huge text, a post with a huge meta, broken JSON, or bytes
    that are not UTF-8."""
    if kind == "text":
        head, tail = b'{"id": "big-text", "text": "', b'"}'
    elif kind == "meta":
        head, tail = b'{"id": "big-meta", "text": "short text", "meta": {"pad": "', b'"}}'
    elif kind == "broken":
        head, tail = b'{"id": "big-broken", "text": "', b""
    else:
        return b"\xff\xfe" * (size // 2)
    return head + b"a" * (size - len(head) - len(tail)) + tail


@pytest.fixture
async def settings(kafka_settings: Settings, _session_topics: list[str], tmp_path: Path) -> Settings:
    policy = tmp_path / "policy.yaml"
    shutil.copy(REPO / "policies" / "default.yaml", policy)
    return await cascade_settings(kafka_settings, policy, _session_topics, batch_max_posts=100, batch_max_wait_ms=20)


async def test_records_of_any_size_end_as_one_bounded_dead_letter_and_the_worker_goes_on(
    settings: Settings, producer_factory: ProducerFactory
) -> None:
    stream = make_stream(400, malformed_every=10_000)
    sizes = {"big-0.5MB": (MB // 2, "text"), "big-1MB": (MB, "meta"), "big-2MB": (2 * MB, "broken"),
             "big-10MB": (10 * MB, "binary")}
    values = {key: oversized(size, kind) for key, (size, kind) in sizes.items()}
    for i, (key, value) in enumerate(values.items()):  # spread among the valid posts
        stream.records.insert(50 + 100 * i, (key.encode(), value))
        stream.malformed_keys.add(key)
    producer = await producer_factory(max_request_size=11 * MB)
    await publish(producer, settings.topics.all()["posts"], stream.records)

    metrics = Metrics.create(CollectorRegistry())
    stop = asyncio.Event()
    worker = asyncio.create_task(run_classify_worker(settings, stop, classifier=FakeClassifier(LABELS),
                                                     metrics=metrics))
    try:
        out = await collect(settings, stream, timeout_s=60)
        assert not worker.done(), worker
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=30)

    assert_accounted(stream, out, duplicates_allowed=False)  # every valid post once, every big record once
    letters = {d.original_key: d for d in out.dead_letters}
    for key, value in values.items():
        dl = letters[key]
        assert (dl.stage, dl.reason) == ("classify.intake", "too_large")
        assert dl.original_truncated and dl.original_size == len(value)
        assert dl.original_sha256 == hashlib.sha256(value).hexdigest()
        assert value.startswith(dl.original_bytes()) and len(dl.original_bytes()) <= settings.dead_letter_max_bytes
        assert len(codec.encode(dl)) <= settings.kafka.max_request_size
    assert metrics.registry.get_sample_value("modcascade_dead_letters_total",
                                             {"stage": "classify.intake", "reason": "too_large"}) == len(values)


class Relay(BatchProcessor):
    """A stage whose output grows with its input, like the adjudicate worker's labels: each post becomes a Label
    carrying its text. Records what the loop says was published."""

    def __init__(self) -> None:
        self.published_records: list[Outgoing] = []

    async def process(self, records: Sequence[RawRecord], wait: Wait) -> list[Outgoing]:
        outputs = []
        for raw in records:
            post = read_post(raw, stage="relay.intake", max_text_bytes=100 * MB)
            if isinstance(post, DeadLetter):
                outputs.append(dead_letter(post, raw))
                continue
            assert isinstance(post, Post)
            label = Label(post_id=post.id, text=post.text, label="spam", source="import")
            outputs.append(Outgoing("labels", post.id.encode(), codec.encode(label), label, raw))
        return outputs

    def published(self, outputs: Sequence[Outgoing]) -> None:
        self.published_records.extend(outputs)


def posts(prefix: str, n: int, big: set[int]) -> list[tuple[bytes, bytes]]:
    records = []
    for i in range(n):
        text = "x" * (2 * MB) if i in big else f"post {i}"
        records.append((f"{prefix}{i}".encode(), codec.dumps({"id": f"{prefix}{i}", "text": text})))
    return records


async def test_an_output_the_producer_refuses_becomes_a_dead_letter_and_the_stream_goes_on(
    settings: Settings, producer_factory: ProducerFactory
) -> None:
    topics = settings.topics.all()
    producer = await producer_factory(max_request_size=3 * MB)
    relay = Relay()
    stop = asyncio.Event()
    group = settings.worker.group_id + "-relay"
    task = asyncio.create_task(run_stream(settings, relay, stop, source_role="posts", group_id=group,
                                          batching=Batching(50, 0.02), metrics=Metrics.create(CollectorRegistry()),
                                          name="relay"))
    try:
        await publish(producer, topics["posts"], posts("a", 30, big={3, 17}))
        await publish(producer, topics["posts"], posts("b", 30, big={0}))  # after the refusals: still read
        dead_consumer = make_consumer(settings, topics["dead_letter"], group_id=None)
        labels_consumer = make_consumer(settings, topics["labels"], group_id=None)
        await dead_consumer.start()
        await labels_consumer.start()
        try:
            letters = [codec.decode(m.value or b"", DeadLetter) for m in await read_records(dead_consumer, 3, 30)]
            labels = [codec.decode(m.value or b"", Label) for m in await read_records(labels_consumer, 57, 30)]
        finally:
            await dead_consumer.stop()
            await labels_consumer.stop()
        assert not task.done(), task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    assert sorted(d.original_key or "" for d in letters) == ["a17", "a3", "b0"]
    assert len({label.post_id for label in labels}) == 57 and not {"a3", "a17", "b0"} & {lb.post_id for lb in labels}
    for dl in letters:
        assert (dl.stage, dl.reason, dl.error_type) == ("relay.publish", "output_too_large", "MessageSizeTooLargeError")
        assert dl.source_topic == topics["posts"] and dl.source_offset is not None
        assert dl.original_truncated and dl.original_size is not None and dl.original_size > 2 * MB
        assert f"the labels output (key '{dl.original_key}'" in dl.message and "MAX_REQUEST_SIZE" in dl.message
    # What the stage was told was published: the dead letters in place of the refused labels, nothing twice.
    told = relay.published_records
    assert sum(isinstance(o.record, DeadLetter) for o in told) == 3 and len(told) == 60
    assert {o.record.post_id for o in told if isinstance(o.record, Label)} == {lb.post_id for lb in labels}
    # Committed: the group's next reader starts after all 60 posts.
    check = make_consumer(settings, group_id=group)
    await check.start()
    try:
        committed = [await check.committed(TopicPartition(topics["posts"], p)) or 0
                     for p in range(settings.kafka.partitions)]
    finally:
        await check.stop()
    assert sum(committed) == 60


async def test_when_even_the_dead_letter_is_refused_the_worker_stops_naming_the_record(
    settings: Settings, producer_factory: ProducerFactory
) -> None:
    topics = settings.topics.all()
    source = await producer_factory(max_request_size=3 * MB)
    await publish(source, topics["posts"], posts("c", 5, big={2}))
    group = settings.worker.group_id + "-tiny"
    consumer = make_consumer(settings, group_id=group, **fast_group(settings))
    # Small enough that a dead letter naming the refusal does not fit, large enough for the small labels.
    producer = make_producer(settings, max_request_size=800)
    await consumer.start()
    await producer.start()
    try:
        loop = StreamLoop(consumer, producer, Relay(), topics, batching=Batching(50, 0.5), name="relay")
        loop.subscribe(topics["posts"])
        with pytest.raises(BrokerError) as info:
            await asyncio.wait_for(loop.run(asyncio.Event()), timeout=30)
        committed = [await consumer.committed(TopicPartition(topics["posts"], p))
                     for p in range(settings.kafka.partitions)]
    finally:
        await producer.stop()
        await consumer.stop()
    message = str(info.value)
    assert f"record {topics['posts']}[" in message and "at offset" in message
    assert "was not committed" in message and "MODCASCADE_KAFKA_MAX_REQUEST_SIZE" in message
    assert isinstance(info.value.__cause__, Exception) and type(info.value.__cause__).__name__ == \
        "MessageSizeTooLargeError"
    assert committed == [None] * settings.kafka.partitions  # nothing of the batch was committed


async def test_the_topics_we_create_take_records_of_max_request_size(kafka_settings: Settings) -> None:
    settings = kafka_settings.model_copy(
        update={"topics": kafka_settings.topics.model_copy(update={"prefix": unique("sizes") + "."})})
    names = list(settings.topics.all().values())
    admin = make_admin(settings)
    try:
        await ensure_topics(settings)
        await admin.start()
        responses: list[Any] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    finally:
        await admin.close()
        await delete_topics(settings, names)
    found = {resource[3]: dict(entry[:2] for entry in resource[4])
             for response in responses for resource in response.resources}
    limit = str(settings.kafka.topic_max_message_bytes)
    assert {name: found[name].get("max.message.bytes") for name in names} == dict.fromkeys(names, limit)
