"""The adjudicate service: adjudication requests → frontier model → verdicts and labels.

    AdjudicationStage (pipeline.adjudication)   budget, breaker, rate limit, the call, the answer check, fallback
    run_stream (pipeline.kafka.stream)          batches, publishes verdicts + labels, awaits acks, then commits
    PolicyStore (pipeline.policy)               the policy file, hot-reloaded

A crash re-adjudicates the uncommitted batch (a second call, the same ``verdict_id``); nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pipeline.adjudication.backends import Adjudicator, FrontierRouter
from pipeline.adjudication.stage import AdjudicationStage
from pipeline.components import adjudication_limits, build_adjudicator
from pipeline.errors import FrontierRejected, SettingsError
from pipeline.kafka.stream import Batching, StreamReport, run_stream
from pipeline.metrics import Metrics
from pipeline.policy import Policy, PolicyStore
from pipeline.settings import Settings

log = logging.getLogger(__name__)


async def run_adjudicate_worker(
    settings: Settings,
    stop: asyncio.Event,
    *,
    adjudicator: Adjudicator | None = None,
    metrics: Metrics | None = None,
    on_ready: asyncio.Event | None = None,
) -> StreamReport:
    """Run until ``stop`` is set or a fatal error is raised. ``adjudicator`` defaults to the configured one
    (closed here); one passed in is not closed."""
    metrics = metrics or Metrics.create()
    owned = adjudicator is None
    adjudicator = adjudicator or build_adjudicator(settings)
    try:
        store = PolicyStore(settings.policy_path, metrics, accept=servable_by(adjudicator))
        stage = AdjudicationStage(adjudicator, lambda: store.current, limits=adjudication_limits(settings),
                                  metrics=metrics)
        a = settings.adjudicator
        log.info("adjudicate worker: %s, policy %s %s, group %s", adjudicator.provider, store.current.name,
                 store.current.version, a.group_id)
        return await run_stream(settings, stage, stop, source_role="adjudication", group_id=a.group_id,
                                batching=Batching(a.batch_max_posts, a.batch_max_wait_ms / 1000), metrics=metrics,
                                name="adjudicate", on_assigned=on_ready.set if on_ready is not None else None,
                                background=[store.watch])
    finally:
        if owned:
            await adjudicator.aclose()


def servable_by(adjudicator: Adjudicator) -> Callable[[Policy], None]:
    """A policy (at startup, or a hot-reloaded edit) must name a provider this worker can call; an edit that
    does not is rejected and the last good policy stays in force."""

    def check(policy: Policy) -> None:
        if isinstance(adjudicator, FrontierRouter):
            try:
                adjudicator.check(policy.adjudication.provider)
            except FrontierRejected as exc:
                raise SettingsError(str(exc)) from exc
        elif adjudicator.provider != policy.adjudication.provider:
            raise SettingsError(f"the policy's adjudication.provider is {policy.adjudication.provider!r} but the "
                                f"adjudicator is {adjudicator.provider!r}")

    return check
