"""Helpers for tests that run classify workers as processes (``modcascade worker classify``) on the session's
vLLM model server: their environment, their log lines, where each post sits in ``posts`` and what the
group has committed (read with an admin client: nothing joins the group)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from aiokafka import TopicPartition

from pipeline.kafka import make_admin, make_consumer
from pipeline.settings import Settings
from tests.support.cascade import REPO, Stream, cascade_settings
from tests.support.models import MAX_LENGTH, Engines

BATCH_MAX_POSTS = 64
"""Posts per batch of the worker processes: what one worker can have published and not yet committed."""


async def vllm_settings(kafka_settings: Settings, session_topics: list[str], tmp_path: Path, engines: Engines,
                        minilm_dir: Path, *, partitions: int | None = None) -> Settings:
    """Namespaced topics (created, with ``partitions`` each when given), a copy of the default policy, short
    group sessions, and the session's model server."""
    policy = tmp_path / "policy.yaml"
    shutil.copy(REPO / "policies" / "default.yaml", policy)
    if partitions is not None:
        kafka_settings = kafka_settings.model_copy(
            update={"kafka": kafka_settings.kafka.model_copy(update={"partitions": partitions})})
    settings = await cascade_settings(kafka_settings, policy, session_topics, batch_max_posts=BATCH_MAX_POSTS)
    model = settings.model.model_copy(update={"dir": minilm_dir, "server_url": engines.server.url,
                                              "max_length": MAX_LENGTH, "retries": 1})
    return settings.model_copy(update={"model": model})


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of a worker process: the test's settings as ``MODCASCADE_*`` variables. Security
    settings of the environment (``MODCASCADE_KAFKA_SECURITY_PROTOCOL``, ...) pass through, so the same test
    runs against a secured Kafka; output is unbuffered so log lines can be waited for."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MODCASCADE_") or k.startswith(("MODCASCADE_KAFKA_SASL", "MODCASCADE_KAFKA_SSL",
                                                                "MODCASCADE_KAFKA_SECURITY"))}
    env.update({
        "PYTHONUNBUFFERED": "1",
        "MODCASCADE_KAFKA_BOOTSTRAP": settings.bootstrap,
        "MODCASCADE_KAFKA_IDEMPOTENCE": str(settings.idempotence).lower(),
        "MODCASCADE_KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka.session_timeout_ms),
        "MODCASCADE_KAFKA_HEARTBEAT_INTERVAL_MS": str(settings.kafka.heartbeat_interval_ms),
        "MODCASCADE_TOPIC_PREFIX": settings.topics.prefix,
        "MODCASCADE_WORKER_GROUP_ID": settings.worker.group_id,
        "MODCASCADE_WORKER_BATCH_MAX_POSTS": str(BATCH_MAX_POSTS),
        "MODCASCADE_MODEL_DIR": str(settings.model.dir),
        "MODCASCADE_MODEL_SERVER_URL": settings.model.server_url,
        "MODCASCADE_MODEL_MAX_LENGTH": str(settings.model.max_length),
        "MODCASCADE_POLICY_PATH": str(settings.policy_path),
        "MODCASCADE_METRICS_PORT": "0",
    })
    return env


READY = "classify worker ready"
_STOPPED = re.compile(r"classify worker stopped: (\d+) records")


async def wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Until ``text`` is in ``log``; fails at once if ``process`` exits first."""
    async with asyncio.timeout(timeout_s):
        while text not in log.read_text(errors="replace"):
            assert process.poll() is None, f"worker exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            await asyncio.sleep(0.1)


def records_processed(log: Path) -> int:
    """What a worker stopped with SIGTERM reported it had processed (and committed)."""
    found = _STOPPED.findall(log.read_text(errors="replace"))
    assert len(found) == 1, log.read_text()[-3000:]
    return int(found[0])


def terminate(process: subprocess.Popen[bytes], log: Path, timeout_s: float = 30.0) -> float:
    """SIGTERM ``process``; assert it exits 0 within ``timeout_s``; return how long it took."""
    started = time.monotonic()
    process.terminate()
    try:
        code = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker did not exit within {timeout_s} s of SIGTERM:\n"
                             f"{log.read_text()[-3000:]}") from None
    assert code == 0, f"exit code {code}:\n{log.read_text()[-3000:]}"
    return time.monotonic() - started


async def source_positions(settings: Settings, stream: Stream, timeout_s: float = 30.0) -> dict[str, tuple[int, int]]:
    """Where each record of ``stream`` sits in ``posts``: its key (post id, or ``bad-...`` for a malformed
    record, as in its dead letter) → (partition, offset). Read without a group."""
    wanted = stream.valid_ids | stream.malformed_keys
    consumer = make_consumer(settings, settings.topics.all()["posts"], group_id=None)
    await consumer.start()
    found: dict[str, tuple[int, int]] = {}
    try:
        async with asyncio.timeout(timeout_s):
            while len(found) < len(wanted):
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for m in records:
                        key = (m.key or b"").decode()
                        assert key not in found, f"{key} was published twice"
                        found[key] = (m.partition, m.offset)
    finally:
        await consumer.stop()
    assert set(found) == wanted
    return found


async def committed_offsets(settings: Settings) -> dict[int, int]:
    """The classify group's committed offset per partition of ``posts`` (0 where nothing is committed).
    Partitions are named explicitly: the embedded broker cannot answer an OffsetFetch for "all"."""
    topic = settings.topics.all()["posts"]
    admin = make_admin(settings)
    try:
        await admin.start()
        partitions = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
        offsets = await admin.list_consumer_group_offsets(settings.worker.group_id, partitions=partitions)
    finally:
        await admin.close()
    return {tp.partition: max(0, meta.offset) for tp, meta in offsets.items()}
