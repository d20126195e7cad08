"""The cascade's promises with the real vLLM engine (the session's model server) and the real broker.

- thousands of posts, malformed ones among them: each valid post ends as exactly one verdict or one
  adjudication request, each malformed one as one dead letter, checked id by id;
- a worker process killed with SIGKILL mid-stream and restarted: no post id is missing afterwards;
- the model server stopped mid-stream: nothing is dead-lettered or lost, processing resumes when it is back.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline.backends import make_classifier
from pipeline.metrics import Metrics
from pipeline.policy import Policy
from pipeline.services import run_classify_worker
from pipeline.settings import Settings
from tests.support.cascade import REPO, assert_accounted, cascade_settings, collect, make_stream, publish
from tests.support.kafka import ProducerFactory
from tests.support.models import MAX_LENGTH, Engines
from tests.support.processes import start_worker

pytestmark = [
    pytest.mark.broker,
    pytest.mark.model,
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]


@pytest.fixture
async def settings(kafka_settings: Settings, _session_topics: list[str], tmp_path: Path, engines: Engines,
                   minilm_dir: Path) -> Settings:
    policy = tmp_path / "policy.yaml"
    shutil.copy(REPO / "policies" / "default.yaml", policy)
    settings = await cascade_settings(kafka_settings, policy, _session_topics, batch_max_posts=128,
                                      batch_max_wait_ms=20, backoff_base_s=0.5, backoff_max_s=2.0)
    model = settings.model.model_copy(update={"dir": minilm_dir, "server_url": engines.server.url,
                                              "max_length": MAX_LENGTH, "retries": 1})
    return settings.model_copy(update={"model": model})


@pytest.fixture
async def in_process_worker(settings: Settings, minilm_dir: Path, policy: Policy) -> AsyncIterator[Metrics]:
    """A classify worker task on the vLLM server, with its own metrics registry; stopped after the test."""
    from pipeline.retry import RetryPolicy

    metrics = Metrics.create(CollectorRegistry())
    classifier = make_classifier("vllm-http", minilm_dir, policy, url=settings.model.server_url,
                                 max_length=MAX_LENGTH, retry=RetryPolicy(retries=1, base_s=0.1, max_s=0.2))
    stop = asyncio.Event()
    task = asyncio.create_task(run_classify_worker(settings, stop, classifier=classifier, metrics=metrics))
    yield metrics
    stop.set()
    await asyncio.wait_for(task, timeout=60)
    await classifier.aclose()


async def test_thousands_of_posts_each_end_as_exactly_one_output(
    settings: Settings, producer_factory: ProducerFactory, in_process_worker: Metrics
) -> None:
    stream = make_stream(3000, malformed_every=60)
    await publish(await producer_factory(), settings.topics.all()["posts"], stream.records)

    out = await collect(settings, stream, timeout_s=120)

    assert_accounted(stream, out, duplicates_allowed=False)
    assert len(stream.malformed_keys) == 50
    models = {(v.model, v.model_version) for v in out.verdicts} | {(r.model, r.model_version) for r in out.requests}
    assert models == {("modcascade-test-minilm", next(iter(models))[1])}
    assert in_process_worker.registry.get_sample_value("modcascade_batch_size_count") or 0 > 0


def worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODCASCADE_")}
    env.update({
        "MODCASCADE_KAFKA_BOOTSTRAP": settings.bootstrap,
        "MODCASCADE_KAFKA_IDEMPOTENCE": str(settings.idempotence).lower(),
        "MODCASCADE_KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka.session_timeout_ms),
        "MODCASCADE_KAFKA_HEARTBEAT_INTERVAL_MS": str(settings.kafka.heartbeat_interval_ms),
        "MODCASCADE_TOPIC_PREFIX": settings.topics.prefix,
        "MODCASCADE_WORKER_GROUP_ID": settings.worker.group_id,
        "MODCASCADE_WORKER_BATCH_MAX_POSTS": "64",
        "MODCASCADE_MODEL_DIR": str(settings.model.dir),
        "MODCASCADE_MODEL_SERVER_URL": settings.model.server_url,
        "MODCASCADE_POLICY_PATH": str(settings.policy_path),
        "MODCASCADE_METRICS_PORT": "0",
    })
    return env


async def test_a_worker_killed_mid_stream_loses_no_post(
    settings: Settings, producer_factory: ProducerFactory, spawn: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    stream = make_stream(3000, malformed_every=100)
    await publish(await producer_factory(), settings.topics.all()["posts"], stream.records)
    log = tmp_path / "worker.log"
    spawn.append(first := start_worker("classify", worker_env(settings), log))

    async with asyncio.timeout(120):  # wait until the worker is well into the stream, then kill it
        while len((partial := await collect(settings, stream, timeout_s=0.5, quiet_s=0)).ids()) < 600:
            assert first.poll() is None, log.read_text()
    assert not partial.complete(stream), "the stream finished before the kill: make it longer"
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=10) == -signal.SIGKILL

    spawn.append(second := start_worker("classify", worker_env(settings), log))
    started = time.monotonic()
    out = await collect(settings, stream, timeout_s=180)

    assert second.poll() is None, log.read_text()
    assert_accounted(stream, out, duplicates_allowed=True)
    assert time.monotonic() - started < 180
    second.send_signal(signal.SIGTERM)  # graceful: finishes and commits its batch
    assert second.wait(timeout=30) == 0, log.read_text()
    assert "all committed" in log.read_text()


async def test_a_stopped_model_server_pauses_the_stream_and_loses_nothing(
    settings: Settings, producer_factory: ProducerFactory, in_process_worker: Metrics, engines: Engines
) -> None:
    def value(name: str, **labels: str) -> float:
        return in_process_worker.registry.get_sample_value(name, labels) or 0.0

    stream = make_stream(1500, malformed_every=50)
    producer = await producer_factory()
    posts = settings.topics.all()["posts"]
    publishing = asyncio.create_task(publish(producer, posts, stream.records, rate_per_s=150))
    try:
        async with asyncio.timeout(60):
            while value("modcascade_decisions_total", decision="allow", category="none", route="slm") < 100:
                await asyncio.sleep(0.1)
        await asyncio.to_thread(engines.server.stop)  # the model server goes away mid-stream
        async with asyncio.timeout(30):
            while value("modcascade_backend_up") != 0:
                await asyncio.sleep(0.1)
        stalled = await collect(settings, stream, timeout_s=3, quiet_s=0)
        await asyncio.sleep(3)
        later = await collect(settings, stream, timeout_s=3, quiet_s=0)
        assert len(later.ids()) == len(stalled.ids()), "posts were decided while the model server was down"
        assert {d.original_key for d in later.dead_letters} <= stream.malformed_keys, "a good post was dead-lettered"
    finally:
        await asyncio.to_thread(engines.server.start)  # the same port: the worker finds it again
        await publishing

    out = await collect(settings, stream, timeout_s=120)
    assert_accounted(stream, out, duplicates_allowed=False)
    assert value("modcascade_backend_up") == 1
    assert value("modcascade_model_errors_total", kind="unavailable") >= 1
