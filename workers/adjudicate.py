"""The adjudicate worker (``modcascade worker adjudicate``): adjudication requests → frontier model → verdicts.

Thin on purpose: it wires settings to the library and runs the loop.

    AdjudicationStage (pipeline.adjudication)   budget, breaker, rate limit, the call, the answer check, fallback
    StreamLoop (pipeline.kafka.stream)          batches, publishes verdicts + labels, awaits acks, then commits
    PolicyStore (pipeline.policy)               the policy file, hot-reloaded

A crash re-adjudicates the uncommitted batch (a second call, the same ``verdict_id``); nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pipeline.adjudication.anthropic_api import AnthropicAdjudicator
from pipeline.adjudication.backends import HOW_TO_CONFIGURE, Adjudicator, FrontierRouter
from pipeline.adjudication.openai_chat import OpenAIChatAdjudicator
from pipeline.adjudication.stage import AdjudicationLimits, AdjudicationStage
from pipeline.errors import FrontierRejected, SettingsError
from pipeline.kafka.stream import Batching, StreamReport, run_stream
from pipeline.metrics import Metrics
from pipeline.policy import Policy, PolicyStore
from pipeline.retry import Backoff
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def configured_providers(settings: Settings) -> tuple[str, ...]:
    """The frontier providers these settings give an endpoint (and key, where one is needed) for."""
    providers = []
    if settings.anthropic_api_key is not None:
        providers.append("anthropic")
    if settings.adjudicator.openai_base_url:
        providers.append("openai")
    return tuple(providers)


def build_adjudicator(settings: Settings) -> FrontierRouter:
    """Every configured provider behind one router; the policy's ``adjudication.provider`` picks per request."""
    a = settings.adjudicator
    built: dict[str, Adjudicator] = {}
    if settings.anthropic_api_key is not None:
        built["anthropic"] = AnthropicAdjudicator(api_key=settings.anthropic_api_key.get_secret_value(),
                                                  base_url=a.base_url, timeout_s=a.timeout_s)
    if a.openai_base_url:
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key is not None else None
        built["openai"] = OpenAIChatAdjudicator(base_url=a.openai_base_url, api_key=key, timeout_s=a.timeout_s)
    if not built:
        raise SettingsError("no frontier model configured for the adjudicate worker: "
                            + "; or ".join(HOW_TO_CONFIGURE.values()))
    return FrontierRouter(built)


def limits_from(settings: Settings) -> AdjudicationLimits:
    a = settings.adjudicator
    return AdjudicationLimits(
        concurrency=a.concurrency, rate_per_s=a.rate_per_s, burst=a.burst, max_attempts=a.max_attempts,
        breaker_failures=a.breaker_failures, breaker_reset_s=a.breaker_reset_s,
        backoff=Backoff(a.backoff_base_s, a.backoff_max_s),
    )


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
        store = PolicyStore(settings.policy_path, metrics, accept=_servable_by(adjudicator))
        stage = AdjudicationStage(adjudicator, lambda: store.current, limits=limits_from(settings), metrics=metrics)
        a = settings.adjudicator
        log.info("adjudicate worker: %s, policy %s %s, group %s", adjudicator.provider, store.current.name,
                 store.current.version, a.group_id)
        return await run_stream(settings, stage, store, stop, source_role="adjudication", group_id=a.group_id,
                                batching=Batching(a.batch_max_posts, a.batch_max_wait_ms / 1000), metrics=metrics,
                                name="adjudicate", on_assigned=on_ready.set if on_ready is not None else None)
    finally:
        if owned:
            await adjudicator.aclose()


def _servable_by(adjudicator: Adjudicator) -> Callable[[Policy], None]:
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
