"""The classify worker on the real broker, with the in-package fake classifier (the model is not under
test here; ``test_cascade_vllm.py`` runs the same promises with the real vLLM engine)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline import codec
from pipeline.backends.fake import FakeClassifier
from pipeline.kafka import make_consumer
from pipeline.metrics import Metrics
from pipeline.policy import load_policy
from pipeline.records import ShadowDecision
from pipeline.services import run_classify_worker
from pipeline.settings import Settings
from tests.support.cascade import REPO, assert_accounted, cascade_settings, collect, make_stream, publish
from tests.support.kafka import ProducerFactory

pytestmark = pytest.mark.broker

LABELS = ("safe", "spam", "harassment", "hate", "sexual", "violence", "self_harm")


@pytest.fixture
async def settings(kafka_settings: Settings, _session_topics: list[str], tmp_path: Path) -> Settings:
    policy = tmp_path / "policy.yaml"
    shutil.copy(REPO / "policies" / "default.yaml", policy)
    return await cascade_settings(kafka_settings, policy, _session_topics, batch_max_posts=200, batch_max_wait_ms=20,
                                  backoff_base_s=0.2, backoff_max_s=1.0)


class Worker:
    """The worker as an in-process task with its own metrics registry."""

    def __init__(self, settings: Settings, classifier: FakeClassifier) -> None:
        self.metrics = Metrics.create(CollectorRegistry())
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.task = asyncio.create_task(run_classify_worker(settings, self.stop, classifier=classifier,
                                                            metrics=self.metrics, on_ready=self.ready.set))

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def worker_factory() -> AsyncIterator[type[Worker]]:
    started: list[Worker] = []

    class Tracked(Worker):
        def __init__(self, settings: Settings, classifier: FakeClassifier) -> None:
            super().__init__(settings, classifier)
            started.append(self)

    yield Tracked
    for w in started:
        w.stop.set()
    for w in started:
        await asyncio.wait_for(w.task, timeout=30)


async def test_every_post_ends_as_one_output_and_bad_records_as_dead_letters(
    settings: Settings, producer_factory: ProducerFactory, worker_factory: type[Worker]
) -> None:
    stream = make_stream(3000, malformed_every=40)
    producer = await producer_factory()
    await publish(producer, settings.topics.all()["posts"], stream.records)
    worker = worker_factory(settings, FakeClassifier(LABELS))

    out = await collect(settings, stream, timeout_s=60)

    assert_accounted(stream, out, duplicates_allowed=False)
    assert len(stream.malformed_keys) == 75
    assert {v.route for v in out.verdicts} == {"slm", "cache"}  # the stream repeats texts
    assert out.requests, "the fake's score spread puts some posts in a band"
    assert worker.value("modcascade_cache_lookups_total", result="hit") > 0
    assert worker.value("modcascade_records_consumed_total", topic=settings.topics.all()["posts"]) >= 3000


async def test_editing_the_policy_file_changes_later_decisions(
    settings: Settings, producer_factory: ProducerFactory, worker_factory: type[Worker]
) -> None:
    band = {"safe": 0.40, "spam": 0.55, "harassment": 0.01, "hate": 0.01, "sexual": 0.01, "violence": 0.01,
            "self_harm": 0.01}
    worker = worker_factory(settings, FakeClassifier(LABELS, rule=lambda text: band))
    await asyncio.wait_for(worker.ready.wait(), 30)
    posts = settings.topics.all()["posts"]
    producer = await producer_factory()
    old = load_policy(settings.policy_path)

    first = make_stream(20, malformed_every=1000, prefix="before-")
    await publish(producer, posts, first.records)
    before = await collect(settings, first, timeout_s=30)
    assert {r.policy_version for r in before.requests} == {old.version} and not before.verdicts

    text = settings.policy_path.read_text()
    edited = text.replace("block_at: 0.90  # scores at or above this take the action\n"
                          "    action: block  # decision at or above block_at: block or review\n"
                          "    tier: deferrable",
                          "block_at: 0.50  # scores at or above this take the action\n"
                          "    action: block  # decision at or above block_at: block or review\n"
                          "    tier: deferrable", 1)
    assert edited != text
    tmp = settings.policy_path.with_suffix(".tmp")
    tmp.write_text(edited)
    tmp.replace(settings.policy_path)  # how editors and ConfigMaps save: a rename over the old file
    new = load_policy(settings.policy_path)
    async with asyncio.timeout(15):
        while worker.value("modcascade_policy_reloads_total") < 1:
            await asyncio.sleep(0.05)

    second = make_stream(20, malformed_every=1000, prefix="after-")
    await publish(producer, posts, second.records)
    after = await collect(settings, second, timeout_s=30)
    later = [v for v in after.verdicts if v.post_id.startswith("after-")]
    assert len(later) == 20
    assert {(v.decision, v.category, v.policy_version) for v in later} == {("block", "spam", new.version)}


async def test_a_model_outage_pauses_consumption_and_loses_nothing(
    settings: Settings, producer_factory: ProducerFactory, worker_factory: type[Worker]
) -> None:
    classifier = FakeClassifier(LABELS)
    worker = worker_factory(settings, classifier)
    await asyncio.wait_for(worker.ready.wait(), 30)
    posts = settings.topics.all()["posts"]
    producer = await producer_factory()

    classifier.down = True
    stream = make_stream(500, malformed_every=50)
    await publish(producer, posts, stream.records)
    async with asyncio.timeout(15):
        while worker.value("modcascade_model_errors_total", kind="unavailable") < 3:
            await asyncio.sleep(0.05)
    assert worker.value("modcascade_backend_up") == 0
    stalled = await collect(settings, stream, timeout_s=1.5)
    assert not stalled.verdicts and not stalled.requests, "nothing may be decided while the model is down"
    assert not [d for d in stalled.dead_letters if d.original_key and not d.original_key.startswith("bad-")]

    classifier.down = False
    out = await collect(settings, stream, timeout_s=30)
    assert_accounted(stream, out, duplicates_allowed=False)
    assert worker.value("modcascade_backend_up") == 1
    assert worker.value("modcascade_backpressure_seconds_total") > 0


async def test_stopping_during_an_outage_leaves_the_batch_to_be_re_read(
    settings: Settings, producer_factory: ProducerFactory, worker_factory: type[Worker]
) -> None:
    down = FakeClassifier(LABELS)
    first = worker_factory(settings, down)
    await asyncio.wait_for(first.ready.wait(), 30)
    down.down = True
    stream = make_stream(100, malformed_every=25)
    await publish(await producer_factory(), settings.topics.all()["posts"], stream.records)
    async with asyncio.timeout(15):
        while first.value("modcascade_model_errors_total", kind="unavailable") < 1:
            await asyncio.sleep(0.05)

    first.stop.set()  # does not wait for the model to come back
    await asyncio.wait_for(first.task, timeout=10)

    worker_factory(settings, FakeClassifier(LABELS))  # the same group re-reads the uncommitted batch
    out = await collect(settings, stream, timeout_s=60)
    assert_accounted(stream, out, duplicates_allowed=False)


async def test_a_worker_started_before_its_model_server_waits_for_it(
    settings: Settings, producer_factory: ProducerFactory, worker_factory: type[Worker]
) -> None:
    classifier = FakeClassifier(LABELS)
    classifier.down = True
    worker = worker_factory(settings, classifier)
    await asyncio.sleep(1.0)
    assert not worker.task.done(), "the worker must wait for the model server, not crash"
    classifier.down = False
    await asyncio.wait_for(worker.ready.wait(), 30)
    stream = make_stream(50, malformed_every=25)
    await publish(await producer_factory(), settings.topics.all()["posts"], stream.records)
    assert_accounted(stream, await collect(settings, stream, timeout_s=30), duplicates_allowed=False)


async def test_a_shadow_policy_records_its_decisions_on_the_shadow_topic_and_publishes_no_verdict(
    settings: Settings, producer_factory: ProducerFactory, worker_factory: type[Worker], tmp_path: Path
) -> None:
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(settings.policy_path.read_text().replace(
        "block_at: 0.90  # scores at or above this take the action\n    action: block  # decision at or above "
        "block_at: block or review\n    tier: deferrable", "block_at: 0.50  # scores at or above this take the "
        "action\n    action: block  # decision at or above block_at: block or review\n    tier: deferrable", 1))
    settings = settings.model_copy(update={"worker": settings.worker.model_copy(
        update={"shadow_policy_path": candidate})})
    band = {"safe": 0.40, "spam": 0.55, "harassment": 0.01, "hate": 0.01, "sexual": 0.01, "violence": 0.01,
            "self_harm": 0.01}
    worker = worker_factory(settings, FakeClassifier(LABELS, rule=lambda text: band))
    stream = make_stream(30, malformed_every=1000, prefix="shadow-")
    await publish(await producer_factory(), settings.topics.all()["posts"], stream.records)

    out = await collect(settings, stream, timeout_s=30)
    consumer = make_consumer(settings, settings.topics.all()["shadow"], group_id=None)
    await consumer.start()
    shadows: dict[str, ShadowDecision] = {}
    try:
        async with asyncio.timeout(30):
            while len(shadows) < len(stream.valid_ids):
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    for m in batch:
                        record = codec.decode(m.value or b"", ShadowDecision)
                        shadows[record.post_id] = record
    finally:
        await consumer.stop()

    live, shadow = load_policy(settings.policy_path), load_policy(candidate)
    assert not out.verdicts and len(out.requests) == len(stream.valid_ids)  # live: every post escalated
    assert {(r.policy_version) for r in out.requests} == {live.version}
    assert set(shadows) == stream.valid_ids
    assert {(s.live_decision, s.shadow_decision, s.shadow_category, s.shadow_policy_version)
            for s in shadows.values()} == {("escalate", "block", "spam", shadow.version)}
    assert worker.value("modcascade_shadow_disagreements_total", live="escalate", shadow="block") == 30
