"""Test tiers, and the broker fixtures.

Tiers: every test gets exactly the markers of what it needs. ``broker`` (the embedded broker or
``KAFKA_BOOTSTRAP``) and ``model`` (the real vLLM engine or transformers) are set from the fixtures a test uses
(``kafka_settings`` and everything built on it; ``minilm_dir``, ``engines``) or by the module's ``pytestmark``
(tests that start the CLI or train a model); ``tools`` marks tests that run other programs (interpreters,
kubectl, hadolint, compose). A test with none of these is ``unit``: pure, with a short timeout, and it may not
start a subprocess (it fails if it tries). ``pytest -m unit`` runs in seconds.

``kafka_settings`` points at a real Kafka when ``KAFKA_BOOTSTRAP`` (or ``MODCASCADE_KAFKA_BOOTSTRAP``)
is set, and otherwise starts the embedded broker once per session on a free port. The factory fixtures
hand out uniquely named topics and started aiokafka clients; clients are stopped at the end of the test
and topics are deleted at the end of the session, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline.kafka import EmbeddedBroker, broker_errors, delete_topics, ensure_topics, make_consumer, make_producer
from pipeline.settings import Settings, load_settings
from tests.support.kafka import ConsumerFactory, ProducerFactory, TopicFactory, unique
from tests.support.processes import spawn  # noqa: F401  (a fixture: processes killed and reaped after the test)

UNIT_TIMEOUT_S = 10.0
"""Per-test timeout of the unit tier (the others keep the global one from pyproject)."""
BROKER_FIXTURES = frozenset({"kafka_settings"})  # the factories and every broker helper are built on it
MODEL_FIXTURES = frozenset({"minilm_dir", "engines"})
SLOW_TIERS = ("broker", "model", "tools")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test its tiers (see the module docstring); a test marked ``unit`` that needs more is an error."""
    wrong = []
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & BROKER_FIXTURES and item.get_closest_marker("broker") is None:
            item.add_marker(pytest.mark.broker)
        if fixtures & MODEL_FIXTURES and item.get_closest_marker("model") is None:
            item.add_marker(pytest.mark.model)
        needs = [tier for tier in SLOW_TIERS if item.get_closest_marker(tier) is not None]
        if not needs:
            if item.get_closest_marker("unit") is None:
                item.add_marker(pytest.mark.unit)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT_S))
        elif item.get_closest_marker("unit") is not None:
            wrong.append(f"{item.nodeid}: marked unit, but needs {', '.join(needs)}")
    if wrong:
        raise pytest.UsageError("tests in the wrong tier:\n  " + "\n  ".join(wrong))


@contextlib.contextmanager
def _no_subprocess(item: pytest.Item) -> Iterator[None]:
    """In a unit test, starting a subprocess fails at once: it belongs in the ``tools`` (or broker/model) tier.
    Active through setup, call and teardown, so module- and session-scoped fixtures a unit test sets up count."""
    if item.get_closest_marker("unit") is None:
        yield
        return
    original = subprocess.Popen.__init__

    def refuse(self: subprocess.Popen[Any], args: Any, *more: Any, **kwargs: Any) -> None:
        raise AssertionError(f"{item.nodeid} (a unit test) started a subprocess ({args!r}): mark it tools, "
                             "broker or model")

    subprocess.Popen.__init__ = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with _no_subprocess(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _no_subprocess(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    with _no_subprocess(item):
        return (yield)


@pytest.fixture(autouse=True)
async def _no_leaked_tasks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Broker and model tests must stop what they start: no asyncio task may outlive its test."""
    if request.node.get_closest_marker("broker") is None and request.node.get_closest_marker("model") is None:
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
