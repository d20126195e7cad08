"""Rebalances between live classify workers, and the consumer-lag metric, on the real broker with the
in-package fake classifier (in-process workers, each with its own metrics registry).

- ``modcascade_consumer_lag{group,topic,partition}`` counts what a worker's partitions still hold: it rises
  while a backlog waits, reaches 0 per partition when everything is committed, follows the partitions a
  rebalance moves (a revoked partition's series is removed) and disappears when the worker stops;
- a worker joining and a worker leaving mid-stream: each live worker finishes (publishes and commits) its
  batch in progress before it gives its partitions up, so no post gets two outputs;
- a rebalance while a worker's model is down does not wait for the model: that worker drops its batch
  (nothing of it was published) and the partitions' owners re-read it; nothing is lost or doubled.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline.backends.fake import FakeClassifier
from pipeline.metrics import Metrics
from pipeline.services import run_classify_worker
from pipeline.settings import Settings
from tests.support.cascade import REPO, Stream, assert_accounted, cascade_settings, collect, make_stream, publish
from tests.support.kafka import ProducerFactory

pytestmark = pytest.mark.broker

LABELS = ("safe", "spam", "harassment", "hate", "sexual", "violence", "self_harm")
LAG = "modcascade_consumer_lag"


@pytest.fixture
async def settings(kafka_settings: Settings, _session_topics: list[str], tmp_path: Path) -> Settings:
    policy = tmp_path / "policy.yaml"
    shutil.copy(REPO / "policies" / "default.yaml", policy)
    return await cascade_settings(kafka_settings, policy, _session_topics, batch_max_posts=50, batch_max_wait_ms=20)


class Worker:
    def __init__(self, settings: Settings, latency_s: float = 0.0, classifier: FakeClassifier | None = None) -> None:
        self.metrics = Metrics.create(CollectorRegistry())
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.group = settings.worker.group_id
        self.posts = settings.topics.all()["posts"]
        self.classifier = classifier or FakeClassifier(LABELS, latency_s=latency_s)
        self.task = asyncio.create_task(run_classify_worker(
            settings, self.stop, classifier=self.classifier, metrics=self.metrics, on_ready=self.ready.set))

    def lag(self) -> dict[int, float]:
        """Partition → lag, for the series this worker exports."""
        found: dict[int, float] = {}
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == LAG:
                    assert sample.labels["group"] == self.group and sample.labels["topic"] == self.posts
                    found[int(sample.labels["partition"])] = sample.value
        return found

    async def halt(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, timeout=30)


@pytest.fixture
async def workers() -> AsyncIterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop.set()
    for w in started:
        await asyncio.wait_for(w.task, timeout=30)


async def _until(check: Callable[[], object], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.05)


async def test_consumer_lag_counts_the_backlog_per_partition_and_follows_the_partitions(
    settings: Settings, producer_factory: ProducerFactory, workers: list[Worker]
) -> None:
    partitions = settings.kafka.partitions
    stream = make_stream(2000, malformed_every=100)
    await publish(await producer_factory(), settings.topics.all()["posts"], stream.records)
    workers.append(first := Worker(settings, latency_s=0.02))  # ~40 batches of 50: a backlog for ~1 s

    peak = 0.0
    async with asyncio.timeout(60):
        while len(first.lag()) < partitions or sum(first.lag().values()) > 0:
            peak = max(peak, sum(first.lag().values()))
            await asyncio.sleep(0.01)
    assert peak > 500, f"the backlog never showed as lag (peak {peak})"
    assert first.lag() == dict.fromkeys(range(partitions), 0.0)
    assert_accounted(stream, await collect(settings, stream, timeout_s=30), duplicates_allowed=False)

    workers.append(second := Worker(settings, latency_s=0.0))  # the group splits the partitions
    await _until(lambda: first.lag() and second.lag() and len(first.lag()) + len(second.lag())
                 == partitions, timeout_s=30)
    assert not set(first.lag()) & set(second.lag()), "a revoked partition's series must be removed"
    more = make_stream(400, malformed_every=100, prefix="q")
    await publish(await producer_factory(), settings.topics.all()["posts"], more.records)
    both = Stream(stream.records + more.records, stream.valid_ids | more.valid_ids,
                  stream.malformed_keys | more.malformed_keys)
    assert_accounted(both, await collect(settings, both, timeout_s=30), duplicates_allowed=False)
    await _until(lambda: set(first.lag().values()) | set(second.lag().values()) == {0.0}, 10)

    await second.halt()  # leaves the group: the first worker gets every partition back
    assert second.lag() == {}, "a stopped worker exports no lag"
    await _until(lambda: len(first.lag()) == partitions, timeout_s=30)


async def test_workers_joining_and_leaving_mid_stream_publish_nothing_twice(
    settings: Settings, producer_factory: ProducerFactory, workers: list[Worker]
) -> None:
    stream = make_stream(3000, malformed_every=60)
    await publish(await producer_factory(), settings.topics.all()["posts"], stream.records)
    # The workers crawl (1 s per batch of 50, so one worker needs a minute) until the group has changed twice, then
    # run at full speed: the group changes mid-stream however long the joins take on a loaded machine.
    crawl_s, full_speed_s = 1.0, 0.01
    workers.append(first := Worker(settings, latency_s=crawl_s))
    await asyncio.wait_for(first.ready.wait(), 30)
    started = time.monotonic()
    workers.append(second := Worker(settings, latency_s=crawl_s))
    await asyncio.wait_for(second.ready.wait(), 30)  # a rebalance: the first gave half its partitions up
    workers.append(third := Worker(settings, latency_s=crawl_s))
    await asyncio.wait_for(third.ready.wait(), 30)
    await second.halt()  # graceful leave: another rebalance
    partial = await collect(settings, stream, timeout_s=0.2, quiet_s=0)
    assert not partial.complete(stream), (f"the stream ended {time.monotonic() - started:.1f} s after the "
                                          "first join, before the group changed: crawl slower")
    for live in (first, third):
        live.classifier.latency_s = full_speed_s

    out = await collect(settings, stream, timeout_s=60)

    assert_accounted(stream, out, duplicates_allowed=False)
    assert third.task.done() is False and first.task.done() is False


async def test_a_rebalance_during_a_model_outage_does_not_wait_for_the_model(
    settings: Settings, producer_factory: ProducerFactory, workers: list[Worker], caplog: pytest.LogCaptureFixture
) -> None:
    workers.append(first := Worker(settings))
    await asyncio.wait_for(first.ready.wait(), 30)
    first.classifier.down = True
    stream = make_stream(600, malformed_every=50)
    await publish(await producer_factory(), settings.topics.all()["posts"], stream.records)
    async with asyncio.timeout(15):  # the first worker's batch is stuck, backing off
        while first.metrics.registry.get_sample_value("modcascade_model_errors_total", {"kind": "unavailable"}) \
                is None:
            await asyncio.sleep(0.05)

    workers.append(second := Worker(settings))
    await asyncio.wait_for(second.ready.wait(), 30)  # the rebalance completed while the model is still down
    assert "dropped uncommitted (none published)" in caplog.text
    first.classifier.down = False

    out = await collect(settings, stream, timeout_s=60)
    assert_accounted(stream, out, duplicates_allowed=False)
