"""The feedback service: labels → the retraining dataset on disk.

    FeedbackStage (pipeline.dataset)            decode, scrub PII per the policy, append (fsynced) to the store
    run_stream (pipeline.kafka.stream)          batches, publishes dead letters, awaits acks, then commits
    PolicyStore (pipeline.policy)               the policy file (dataset.scrub_pii), hot-reloaded

A crash re-delivers the uncommitted batch; the store skips the labels it already holds, so none is lost and
none is written twice. Workers scale out as a consumer group sharing one dataset folder (a shared volume).
"""

from __future__ import annotations

import asyncio
import logging

from pipeline.components import open_dataset
from pipeline.dataset.feedback import FeedbackStage
from pipeline.kafka.stream import Batching, StreamReport, run_stream
from pipeline.metrics import Metrics
from pipeline.policy import PolicyStore
from pipeline.settings import Settings

log = logging.getLogger(__name__)


async def run_feedback_worker(
    settings: Settings,
    stop: asyncio.Event,
    *,
    metrics: Metrics | None = None,
    on_ready: asyncio.Event | None = None,
) -> StreamReport:
    """Run until ``stop`` is set or a fatal error is raised; ``on_ready`` is set once partitions are assigned."""
    metrics = metrics or Metrics.create()
    f = settings.feedback
    dataset = await asyncio.to_thread(open_dataset, settings)
    policies = PolicyStore(settings.policy_path, metrics)
    stage = FeedbackStage(dataset, lambda: policies.current, metrics=metrics)
    log.info("feedback worker: dataset %s (%d posts), policy %s %s, group %s", f.dataset_dir, len(dataset),
             policies.current.name, policies.current.version, f.group_id)
    return await run_stream(settings, stage, stop, source_role="labels", group_id=f.group_id,
                            batching=Batching(f.batch_max_labels, f.batch_max_wait_ms / 1000), metrics=metrics,
                            name="feedback", on_assigned=on_ready.set if on_ready is not None else None,
                            background=[policies.watch])
