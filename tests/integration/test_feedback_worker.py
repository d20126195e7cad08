"""The feedback worker on the real broker: labels topic → retraining dataset, de-duplicated, PII scrubbed.

- in process: frontier labels, later human overrides, redelivered duplicates and malformed records; the dataset
  ends with exactly one winning row per post, no PII, and the malformed records as dead letters;
- `modcascade worker feedback` killed with SIGKILL mid-stream and restarted: every published label is in the
  dataset exactly once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline import codec
from pipeline.dataset.feedback import INTAKE_STAGE
from pipeline.dataset.store import DatasetStore
from pipeline.metrics import Metrics
from pipeline.records import DeadLetter, Label, LabelSource
from pipeline.services import run_feedback_worker
from pipeline.settings import Settings
from tests.support.cascade import MALFORMED, REPO, cascade_settings, publish
from tests.support.kafka import ConsumerFactory, ProducerFactory, read_records
from tests.support.processes import start_worker
from tests.support.samples import SCORES, T0

pytestmark = pytest.mark.broker

PII_TEXT = "WIN big, write to winner@prizes.example.com or call 555-123-4567"


@pytest.fixture
async def settings(kafka_settings: Settings, _session_topics: list[str], tmp_path: Path) -> Settings:
    policy = tmp_path / "policy.yaml"
    shutil.copy(REPO / "policies" / "default.yaml", policy)  # scrubs emails, phones, urls and handles
    settings = await cascade_settings(kafka_settings, policy, _session_topics)
    feedback = settings.feedback.model_copy(update={
        "group_id": settings.topics.prefix + "feedback", "dataset_dir": tmp_path / "dataset",
        "batch_max_labels": 50, "batch_max_wait_ms": 20})
    return settings.model_copy(update={"feedback": feedback})


@dataclass
class LabelStream:
    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    winners: dict[str, tuple[str, LabelSource]] = field(default_factory=dict)
    malformed: int = 0

    def add(self, label: Label, *, wins: bool = True) -> None:
        self.records.append((label.post_id.encode(), codec.encode(label)))
        if wins:
            self.winners[label.post_id] = (label.label or "", label.source)


def frontier(i: int, text: str = "") -> Label:
    return Label(post_id=f"post-{i}", text=text or f"post {i} text", label=("spam", "safe", "hate")[i % 3],
                 source="frontier", model_scores=SCORES, model_version="m-1", policy_version="p-1",
                 labelled_at=T0 + timedelta(seconds=i))


def label_stream(n: int) -> LabelStream:
    """``n`` frontier labels (some with PII); one post in ten later reviewed by a human (an older timestamp:
    precedence is by source first); one in seven published twice; a malformed record every 40."""
    stream = LabelStream()
    for i in range(n):
        label = frontier(i, PII_TEXT if i % 11 == 0 else "")
        stream.add(label)
        if i % 7 == 0:
            stream.add(label)  # delivered again upstream (the adjudicate worker redid a batch)
        if i % 10 == 0:
            stream.add(Label(post_id=label.post_id, text=label.text, label="safe", source="human",
                             labelled_at=T0 - timedelta(days=1)))
        if i % 40 == 39:
            stream.records.append((f"bad-{i}".encode(), MALFORMED[i % len(MALFORMED)]))
            stream.malformed += 1
    return stream


async def wait_for_dataset(folder: Path, expected: set[str], timeout_s: float) -> DatasetStore:
    async with asyncio.timeout(timeout_s):
        while True:
            store = DatasetStore(folder)
            if set(store.current()["post_id"].to_pylist()) >= expected:
                return store
            await asyncio.sleep(0.2)


def assert_dataset(store: DatasetStore, stream: LabelStream) -> None:
    current = {r["post_id"]: (r["label"], r["source"]) for r in store.current().to_pylist()}
    assert current == stream.winners
    rows = store.rows().to_pylist()
    repeated = [key for key, n in Counter((r["post_id"], r["source"], r["labelled_at"]) for r in rows).items()
                if n > 1]
    assert not repeated, f"labels written twice: {repeated[:5]}"
    texts = [r["text"] for r in rows]
    assert not any("winner@prizes" in t or "555-123-4567" in t for t in texts), "PII reached the dataset"
    assert "WIN big, write to [EMAIL] or call [PHONE]" in texts


async def test_labels_flow_into_the_dataset_once_each_with_pii_scrubbed(
    settings: Settings, producer_factory: ProducerFactory, consumer_factory: ConsumerFactory
) -> None:
    stream = label_stream(400)
    metrics = Metrics.create(CollectorRegistry())
    stop, ready = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(run_feedback_worker(settings, stop, metrics=metrics, on_ready=ready))
    try:
        await publish(await producer_factory(), settings.topics.all()["labels"], stream.records)
        store = await wait_for_dataset(settings.feedback.dataset_dir, set(stream.winners), timeout_s=30)
        dead = await read_records(await consumer_factory(settings.topics.all()["dead_letter"]), stream.malformed)
    finally:
        stop.set()
        report = await asyncio.wait_for(worker, timeout=30)

    assert ready.is_set()
    assert_dataset(store, stream)
    letters = [codec.decode(m.value or b"", DeadLetter) for m in dead]
    assert {d.stage for d in letters} == {INTAKE_STAGE}
    assert sorted(d.original_key or "" for d in letters) == sorted(
        k.decode() for k, _ in stream.records if k.startswith(b"bad-"))
    assert report.records == len(stream.records)
    written = sum(metrics.registry.get_sample_value("modcascade_labels_written_total", {"source": s}) or 0
                  for s in ("frontier", "human"))
    assert written == store.rows().num_rows
    assert (metrics.registry.get_sample_value("modcascade_labels_skipped_total", {"reason": "duplicate"}) or 0) >= 1


def worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODCASCADE_")}
    env.update({
        "MODCASCADE_KAFKA_BOOTSTRAP": settings.bootstrap,
        "MODCASCADE_KAFKA_IDEMPOTENCE": str(settings.idempotence).lower(),
        "MODCASCADE_KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka.session_timeout_ms),
        "MODCASCADE_KAFKA_HEARTBEAT_INTERVAL_MS": str(settings.kafka.heartbeat_interval_ms),
        "MODCASCADE_TOPIC_PREFIX": settings.topics.prefix,
        "MODCASCADE_FEEDBACK_GROUP_ID": settings.feedback.group_id,
        "MODCASCADE_FEEDBACK_DATASET_DIR": str(settings.feedback.dataset_dir),
        "MODCASCADE_FEEDBACK_BATCH_MAX_LABELS": "25",
        "MODCASCADE_FEEDBACK_BATCH_MAX_WAIT_MS": "20",
        "MODCASCADE_POLICY_PATH": str(settings.policy_path),
        "MODCASCADE_METRICS_PORT": "0",
    })
    return env


async def test_a_feedback_worker_killed_mid_stream_loses_no_label(
    settings: Settings, producer_factory: ProducerFactory, spawn: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    stream = label_stream(2000)
    folder = settings.feedback.dataset_dir
    log = tmp_path / "worker.log"
    spawn.append(first := start_worker("feedback", worker_env(settings), log))
    producer = await producer_factory()
    # Offered over ~4 s, so the kill lands while labels are still arriving and batches are being written.
    publishing = asyncio.create_task(publish(producer, settings.topics.all()["labels"], stream.records,
                                             rate_per_s=len(stream.records) / 4))
    try:
        async with asyncio.timeout(30):
            while DatasetStore(folder).rows().num_rows < 300:
                assert first.poll() is None, log.read_text()
                await asyncio.sleep(0.05)
        assert len(DatasetStore(folder)) < len(stream.winners), "the stream finished before the kill"
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        spawn.append(second := start_worker("feedback", worker_env(settings), log))
    finally:
        await publishing

    started = time.monotonic()
    store = await wait_for_dataset(folder, set(stream.winners), timeout_s=30)
    assert second.poll() is None, log.read_text()
    await asyncio.sleep(1.0)  # the restarted worker has re-read the uncommitted batch by now: nothing more comes
    store = DatasetStore(folder)
    assert_dataset(store, stream)
    assert time.monotonic() - started < 30
    second.send_signal(signal.SIGTERM)  # graceful: finishes and commits its batch
    assert second.wait(timeout=30) == 0, log.read_text()
    assert "feedback worker stopped" in log.read_text()
