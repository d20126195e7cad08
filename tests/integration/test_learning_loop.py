"""The learning loop end to end on the real broker, with real training on CPU:

labels on the ``labels`` topic → feedback worker → dataset (no duplicates) → ``retrain`` (export, train, eval,
gate) → the better candidate is promoted; a candidate trained on shuffled labels is refused with the comparison
printed and the pointer left alone; rollback returns to the model the first promotion replaced.

The current model at the start is the session's MiniLM with an untrained (random) head: any honest training on
the labels must beat it, and a model trained on shuffled labels must not beat the promoted one.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from rich.console import Console

from pipeline import codec
from pipeline.backends.base import ModelInfo
from pipeline.dataset.store import DatasetStore
from pipeline.metrics import Metrics
from pipeline.promotion.command import run_promote, run_rollback
from pipeline.promotion.retrain import RetrainOptions, run_retrain
from pipeline.records import Label
from pipeline.services import run_feedback_worker
from pipeline.settings import Settings
from pipeline.training.card import write_card
from pipeline.training.config import TrainConfig
from pipeline.training.data import Example, load_examples
from tests.support.cascade import REPO, cascade_settings, publish
from tests.support.kafka import ProducerFactory
from tests.support.samples import T0

pytestmark = [pytest.mark.broker, pytest.mark.model]

POSTS = 900
REDELIVERED = 100
TRAIN = TrainConfig(epochs=4, batch_size=16, learning_rate=2e-4, num_threads=2)  # the demo recipe, shorter


def corpus_labels() -> list[Label]:
    rows = [codec.loads(line) for line in (REPO / "pipeline" / "data" / "seed_corpus.jsonl").read_bytes().splitlines()]
    random.Random(7).shuffle(rows)
    return [Label(post_id=row["id"], text=row["text"], label=row["label"], source="frontier",
                  labelled_at=T0 + timedelta(seconds=i)) for i, row in enumerate(rows[:POSTS])]


@pytest.fixture
async def settings(kafka_settings: Settings, _session_topics: list[str], tmp_path: Path, minilm_dir: Path
                   ) -> Settings:
    policy = tmp_path / "policy.yaml"
    shutil.copy(REPO / "policies" / "default.yaml", policy)
    settings = await cascade_settings(kafka_settings, policy, _session_topics)
    models = tmp_path / "models"
    shutil.copytree(minilm_dir, models / "current")  # a plain directory, as `make run` leaves it
    return settings.model_copy(update={
        "feedback": settings.feedback.model_copy(update={
            "group_id": settings.topics.prefix + "feedback", "dataset_dir": tmp_path / "dataset",
            "batch_max_labels": 200, "batch_max_wait_ms": 50}),
        "model": settings.model.model_copy(update={"dir": models / "current", "max_length": 48}),
        "promote": settings.promote.model_copy(update={"models_dir": models}),
    })


async def test_labels_become_a_dataset_a_retrained_model_is_promoted_and_a_worse_one_refused(
    settings: Settings, producer_factory: ProducerFactory, tmp_path: Path
) -> None:
    labels = corpus_labels()
    records = [(label.post_id.encode(), codec.encode(label)) for label in labels]
    metrics = Metrics.create(CollectorRegistry())
    stop = asyncio.Event()
    worker = asyncio.create_task(run_feedback_worker(settings, stop, metrics=metrics))
    producer = await producer_factory()
    await publish(producer, settings.topics.all()["labels"], records)
    await publish(producer, settings.topics.all()["labels"], records[:REDELIVERED])  # upstream redelivery
    try:
        async with asyncio.timeout(60):
            while (metrics.registry.get_sample_value("modcascade_labels_skipped_total", {"reason": "duplicate"})
                   or 0) < REDELIVERED:
                assert not worker.done(), worker
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=30)
    store = DatasetStore(settings.feedback.dataset_dir)
    assert store.current().num_rows == POSTS and store.rows().num_rows == POSTS, "the dataset has duplicates"

    original = ModelInfo.from_dir(settings.model.dir).version
    console = Console(record=True, width=160)
    golden = tmp_path / "golden.jsonl"
    # The commands are synchronous (they run their own event loop to score): run them off this test's loop.
    better = await asyncio.to_thread(run_retrain, console, settings, RetrainOptions(
        golden=golden, work=tmp_path / "runs", train=TRAIN, min_examples=100))
    output = console.export_text()
    assert better.promoted and better.decision is not None and better.decision.accepted, output
    assert "candidate vs current" in output and "macro-F1" in output
    assert golden.exists(), "the golden set is pinned for the next runs"
    promoted = ModelInfo.from_dir(settings.model.dir).version
    assert promoted == better.candidate.model.version != original
    assert settings.model.dir.is_symlink()

    # A deliberately worse candidate: the same training rows with their labels shuffled.
    run_dir = next((tmp_path / "runs").iterdir())
    rows = [*load_examples(run_dir / "data" / "train.jsonl"), *load_examples(run_dir / "data" / "val.jsonl")]
    shuffled_labels = [e.label for e in rows]
    random.Random(0).shuffle(shuffled_labels)
    from pipeline.training.trainer import train

    worse_dir = tmp_path / "worse"
    result = train(replace(TRAIN, max_length=48, epochs=1), [Example(e.text, label, e.line) for e, label in
                                                   zip(rows, shuffled_labels, strict=True)], worse_dir)
    write_card(result)
    console = Console(record=True, width=160)
    worse = await asyncio.to_thread(run_promote, console, settings, candidate=worse_dir, current=None,
                                    golden=run_dir / "data" / "golden.jsonl")
    output = console.export_text()
    assert not worse.promoted and worse.decision is not None, output
    assert any(reason.startswith("macro-F1") for reason in worse.decision.reasons), output
    assert "refused" in output and "nothing was changed" in output
    assert ModelInfo.from_dir(settings.model.dir).version == promoted

    assert run_rollback(Console(record=True), settings) == original
    assert ModelInfo.from_dir(settings.model.dir).version == original
