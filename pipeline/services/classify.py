"""The classify service: posts → small model → verdicts, adjudication requests or shadow decisions.

    ClassifyStage (pipeline.cascade)   intake, cache, classify with backoff, decide, route
    run_stream (pipeline.kafka.stream) batches, publishes, awaits acks, then commits (at-least-once)
    PolicyStore (pipeline.policy)      the policy file, hot-reloaded; each batch decides under one version
    GuardFollower (pipeline.kafka)     the control topic, read whole before the first batch and followed beside the
                                       loop: the action guards in force (docs/guard.md)

Why aiokafka and not a faust agent on this path: docs/decisions.md (measured: faust's per-event machinery
caps the pipeline far below the 10k posts/s target and its acknowledgement model is where its known loss
bugs live; this loop commits exactly what was published).

Scale out by starting more workers with the same ``MODCASCADE_WORKER_GROUP_ID``: Kafka spreads the
partitions of ``posts`` over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from pipeline.backends import Classifier
from pipeline.backends.base import LabelMap
from pipeline.cascade.cache import ScoreCache
from pipeline.cascade.stage import ClassifyStage
from pipeline.components import build_classifier
from pipeline.errors import BackendUnavailable
from pipeline.kafka.control import GuardFollower
from pipeline.kafka.stream import Batching, StreamReport, run_stream
from pipeline.metrics import Metrics
from pipeline.policy import GuardBoard, Policy, PolicyStore
from pipeline.retry import Backoff
from pipeline.settings import Settings

log = logging.getLogger(__name__)


async def run_classify_worker(
    settings: Settings,
    stop: asyncio.Event,
    *,
    classifier: Classifier | None = None,
    metrics: Metrics | None = None,
    on_ready: Callable[[], None] | None = None,
) -> StreamReport:
    """Run until ``stop`` is set (the batch in progress is committed first) or a fatal error is raised.

    ``classifier`` defaults to :func:`build_classifier`; one passed in is not closed here. ``metrics``
    defaults to the process registry (served on ``settings.metrics_port`` by the caller). ``on_ready`` is
    called once the consumer group has assigned this worker its partitions.
    """
    metrics = metrics or Metrics.create()
    owned = classifier is None
    classifier = classifier or build_classifier(settings)
    w = settings.worker
    backoff = Backoff(w.backoff_base_s, w.backoff_max_s)
    try:
        if not await _wait_for_backend(classifier, backoff, stop):
            return StreamReport(0, 0)
        labels = classifier.labels

        def fits_model(policy: Policy) -> None:  # a hot-reloaded taxonomy must still match the served model
            LabelMap.for_policy(labels, policy)

        store = PolicyStore(settings.policy_path, metrics, accept=fits_model)
        board = GuardBoard()
        # The shadow policy is hot-reloaded like the live one, but its file's validity is not the live policy's
        # metric (no metrics here): an invalid candidate is logged and the last good candidate stays.
        shadow = (PolicyStore(w.shadow_policy_path, accept=fits_model) if w.shadow_policy_path is not None
                  else None)
        stage = ClassifyStage(
            classifier, lambda: store.current,
            cache=ScoreCache(w.cache_entries, w.cache_ttl_s), metrics=metrics,
            max_text_bytes=settings.max_text_bytes, max_post_bytes=settings.max_post_bytes,
            dead_letter_max_bytes=settings.dead_letter_max_bytes, backoff=backoff,
            shadow=(lambda: shadow.current) if shadow is not None else None, audit=True, guards=board.tripped,
        )
        log.info("classify worker: %s (%s) on %s, policy %s %s, group %s", classifier.model_name,
                 classifier.model_version, classifier.backend, store.current.name, store.current.version, w.group_id)
        if shadow is not None:
            log.info("shadow policy %s %s (%s): decisions to the shadow topic, never to verdicts",
                     shadow.current.name, shadow.current.version, shadow.path)
        watched = [store.watch] + ([shadow.watch] if shadow is not None else [])
        guards = GuardFollower(settings, board, metrics=metrics)
        try:
            await guards.open()  # the guards in force before the first post is decided
            return await run_stream(settings, stage, stop, source_role="posts", group_id=w.group_id,
                                    batching=Batching(w.batch_max_posts, w.batch_max_wait_ms / 1000, overlap=True),
                                    metrics=metrics, name="classify", on_assigned=on_ready,
                                    background=[*watched, guards.follow])
        finally:
            await guards.close()
    finally:
        if owned:
            await classifier.aclose()


async def _wait_for_backend(classifier: Classifier, backoff: Backoff, stop: asyncio.Event) -> bool:
    """The startup check, retried while the backend is unreachable (a model server that is still starting or
    rolling over is not a reason to crash); any other failure (wrong model served) is raised. False if
    ``stop`` was set first."""
    failures = 0
    while not stop.is_set():
        try:
            await classifier.check()
            return True
        except BackendUnavailable as exc:
            delay = backoff.delay(failures)
            failures += 1
            log.warning("model backend not reachable yet (%s); checking again in %.1f s", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
    return False
