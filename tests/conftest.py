"""Broker fixtures for integration tests.

``kafka_settings`` points at a real Kafka when ``KAFKA_BOOTSTRAP`` (or ``MODCASCADE_KAFKA_BOOTSTRAP``)
is set, and otherwise starts the embedded broker once per session on a free port. The factory fixtures
hand out uniquely named topics and started aiokafka clients; clients are stopped at the end of the test
and topics are deleted at the end of the session, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline.kafka import EmbeddedBroker, broker_errors, delete_topics, ensure_topics, make_consumer, make_producer
from pipeline.settings import Settings, load_settings
from tests.support.kafka import ConsumerFactory, ProducerFactory, TopicFactory, unique
from tests.support.processes import spawn  # noqa: F401  (a fixture: processes killed and reaped after the test)


@pytest.fixture(autouse=True)
async def _no_leaked_tasks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Integration tests must stop what they start: no asyncio task may outlive its test."""
    if request.node.get_closest_marker("integration") is None:
        yield
        return
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)  # let tasks that were just cancelled finish
    leaked = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    assert not leaked, f"tasks left running: {leaked}"


@pytest.fixture(scope="session")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = load_settings()
    if not settings.uses_embedded_broker:
        yield settings
        return
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker.from_settings(settings.broker, port=0, log_path=log_path) as broker:
        yield settings.model_copy(update={"broker": settings.broker.model_copy(update={"port": broker.port})})


@pytest.fixture(scope="session")
async def _session_topics(kafka_settings: Settings) -> AsyncIterator[list[str]]:
    names: list[str] = []
    yield names
    await delete_topics(kafka_settings, names)


@pytest.fixture
def topic_factory(kafka_settings: Settings, _session_topics: list[str]) -> TopicFactory:
    """``await topic_factory(prefix, partitions=1, config=None)`` creates a fresh topic and returns its name."""

    async def create(prefix: str = "test", *, partitions: int = 1, config: Mapping[str, str] | None = None) -> str:
        name = unique(prefix)
        await ensure_topics(kafka_settings, [name], partitions, configs={name: config} if config else None)
        _session_topics.append(name)
        return name

    return create


@pytest.fixture
async def producer_factory(kafka_settings: Settings) -> AsyncIterator[ProducerFactory]:
    """``await producer_factory(**overrides)``: a started producer (settings' acks, idempotence, ...)."""
    producers: list[AIOKafkaProducer] = []

    async def create(**overrides: Any) -> AIOKafkaProducer:
        producer = make_producer(kafka_settings, **overrides)
        producers.append(producer)
        with broker_errors("starting a test producer", kafka_settings.bootstrap):
            await producer.start()
        return producer

    yield create
    for producer in producers:
        await producer.stop()


@pytest.fixture
async def consumer_factory(kafka_settings: Settings) -> AsyncIterator[ConsumerFactory]:
    """``await consumer_factory(*topics, group_id=None, **overrides)``: a started consumer reading from the
    earliest offset, no auto-commit; ``group_id=None`` reads without a group (fast: no join)."""
    consumers: list[AIOKafkaConsumer] = []

    async def create(*topics: str, group_id: str | None = None, **overrides: Any) -> AIOKafkaConsumer:
        consumer = make_consumer(kafka_settings, *topics, group_id=group_id, **overrides)
        consumers.append(consumer)
        with broker_errors("starting a test consumer", kafka_settings.bootstrap):
            await consumer.start()
        return consumer

    yield create
    for consumer in consumers:
        await consumer.stop()
