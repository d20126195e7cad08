"""``modcascade batch``: wire settings and options to a :class:`~pipeline.batch.runner.BatchRun`, print the report.

The classifier is the stream's backend, built the stream's way (``vllm-local`` by default: vLLM's offline
``LLM.classify`` in this process; ``vllm-http`` for a model server). Escalations go to the frontier the policy
names when the settings configure it; deferrable ones go to Anthropic's Message Batches when the provider is
Anthropic (``--no-defer`` adjudicates them at once instead). Without a configured frontier, escalations are
written to the unadjudicated file and the report says how to enable adjudication.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from rich.console import Console

from pipeline.adjudication.backends import HOW_TO_CONFIGURE
from pipeline.adjudication.message_batches import MessageBatches
from pipeline.adjudication.stage import AdjudicationStage
from pipeline.batch.memory import OwnPeakRss
from pipeline.batch.report import BatchReport
from pipeline.batch.runner import BatchOptions, BatchRun, Outputs
from pipeline.batch.sources import PostSource
from pipeline.batch.sources.files import open_file_source
from pipeline.cascade.cache import ScoreCache
from pipeline.cascade.stage import ClassifyStage
from pipeline.errors import ConfigError
from pipeline.metrics import Metrics
from pipeline.policy import load_policy
from pipeline.retry import Backoff
from pipeline.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchInput:
    """A file, or a range of a topic (from an offset or a time; default the beginning)."""

    file: Path | None = None
    topic: str | None = None
    from_offset: int | None = None
    from_time: datetime | None = None

    def __post_init__(self) -> None:
        if (self.file is None) == (self.topic is None):
            raise ConfigError("give the posts to run as --in FILE or --from-topic TOPIC (one of them)")
        if self.file is not None and (self.from_offset is not None or self.from_time is not None):
            raise ConfigError("--from-offset and --from-time select a range of a topic: use them with --from-topic")
        if self.from_offset is not None and self.from_time is not None:
            raise ConfigError("--from-offset and --from-time both say where to start: give one")


@dataclass(frozen=True, slots=True)
class BatchCommand:
    source: BatchInput
    out: Path
    policy: Path | None = None
    model: Path | None = None
    backend: str | None = None
    dead_letters: Path | None = None
    state: Path | None = None
    overwrite: bool = False
    wait: bool = True
    defer: bool = True
    progress: bool = True


async def run_batch_command(console: Console, settings: Settings, command: BatchCommand) -> BatchReport:
    from pipeline.components import adjudication_limits, build_adjudicator, build_classifier, configured_providers

    policy_path = command.policy or settings.policy_path
    policy = load_policy(policy_path)
    b = settings.batch
    source = await _open_source(settings, command.source)
    classifier = build_classifier(settings, backend=command.backend or b.backend, model_dir=command.model,
                                  policy=policy)
    metrics = Metrics.create(CollectorRegistry())
    provider = policy.adjudication.provider
    router = build_adjudicator(settings) if provider in configured_providers(settings) else None
    batches = None
    if router is not None and command.defer and provider == "anthropic":
        assert settings.anthropic_api_key is not None  # configured_providers checked it
        batches = MessageBatches(api_key=settings.anthropic_api_key.get_secret_value(),
                                 base_url=settings.adjudicator.base_url, timeout_s=settings.adjudicator.timeout_s)
    if router is None:
        console.print(f"[yellow]no frontier model configured for provider {provider}[/]: escalations are written to "
                      f"the unadjudicated file; to adjudicate them, {HOW_TO_CONFIGURE.get(provider, 'configure it')}")
    w = settings.worker
    backoff = Backoff(w.backoff_base_s, w.backoff_max_s)
    try:
        # ClassifyStage and AdjudicationStage are the stream workers' own stages: same decisions, same fallbacks.
        classify = ClassifyStage(classifier, lambda: policy, cache=ScoreCache(b.cache_entries, w.cache_ttl_s),
                                 metrics=metrics, max_text_bytes=settings.max_text_bytes, backoff=backoff,
                                 max_post_bytes=settings.max_post_bytes,
                                 dead_letter_max_bytes=settings.dead_letter_max_bytes)
        adjudicate = (AdjudicationStage(router, lambda: policy, limits=adjudication_limits(settings), metrics=metrics)
                      if router is not None else None)
        outputs = Outputs.beside(command.out, dead_letters=command.dead_letters, state=command.state)
        options = BatchOptions(outputs=outputs, chunk_posts=b.chunk_posts, message_batch_max=b.message_batch_max,
                               poll_interval_s=b.poll_interval_s, max_deferred_attempts=b.max_deferred_attempts,
                               wait=command.wait, overwrite=command.overwrite, progress=command.progress)
        identity: dict[str, Any] = {
            "input": source.identity, "policy": f"{policy.name} {policy.version}",
            "model": f"{classifier.model_name} {classifier.model_version}",
            "verdicts": str(outputs.verdicts.resolve()),
        }
        log.info("batch: %s → %s with %s (%s) on %s, policy %s %s", source.description, outputs.verdicts,
                 classifier.model_name, classifier.model_version, classifier.backend, policy.name, policy.version)
        run = BatchRun(source, policy, classify, options, identity=identity, adjudicate=adjudicate, batches=batches,
                       metrics=metrics, console=console, memory=OwnPeakRss())
        report = await run.run()
    finally:
        await classifier.aclose()
        if router is not None:
            await router.aclose()
        if batches is not None:
            await batches.aclose()
        await source.aclose()
    report.render(console)
    return report


async def _open_source(settings: Settings, given: BatchInput) -> PostSource:
    if given.file is not None:
        return open_file_source(given.file)
    assert given.topic is not None
    from pipeline.batch.sources.topic import open_topic_source  # a file run loads no Kafka client

    topic = settings.topics.all().get(given.topic.replace("-", "_"), given.topic)  # a role or a topic name
    return await open_topic_source(settings, topic, from_offset=given.from_offset, from_time=given.from_time)
