"""Failure storms on the real broker, through the real ``anthropic`` SDK and the worker as configured from settings.

A 529 storm mixed with client timeouts opens the circuit breaker; the policy's fallback decides what happens
meanwhile (the small model's best guess, or hold and retry); the breaker closes when the API recovers. An
hourly request budget running out mid-stream hands the rest to the fallback. In every case each post id gets
exactly one final verdict, and each outcome is visible in the metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from pipeline import codec
from pipeline.metrics import Metrics
from pipeline.records import AdjudicationRequest, Post, Verdict
from pipeline.services import run_adjudicate_worker
from pipeline.settings import Settings
from tests.support.cascade import REPO, cascade_settings, publish, read_verdicts
from tests.support.frontier import MessagesServer, Reply
from tests.support.kafka import ProducerFactory

pytestmark = pytest.mark.broker

DEFAULT_YAML = (REPO / "policies" / "default.yaml").read_text()
SCORES = {"safe": 0.40, "spam": 0.55, "harassment": 0.01, "hate": 0.01, "sexual": 0.01, "violence": 0.01,
          "self_harm": 0.02}
SPAM = {"category": "spam", "decision": "block", "rationale": "Unsolicited promotion."}
POSTS = 60
STORM_S = 1.0


@pytest.fixture
async def server() -> AsyncIterator[MessagesServer]:
    async with MessagesServer() as s:
        yield s


def storm_then_calm(server: MessagesServer) -> None:
    """For STORM_S seconds from the first call: 529 overloaded and calls slower than the client timeout, in turn;
    afterwards, a good answer to every call."""
    started: list[float] = []

    def respond(body: Mapping[str, Any]) -> Reply:
        now = time.monotonic()
        started.append(started[0] if started else now)
        if now - started[0] < STORM_S:
            return Reply.error(529, "overloaded_error") if len(started) % 2 else Reply.tool(SPAM, delay_s=2.0)
        return Reply.tool(SPAM)

    server.default = respond


async def adjudicate_stream(base: Settings, topics_created: list[str], tmp_path: Path, policy_yaml: str,
                            producer_factory: ProducerFactory, server: MessagesServer
                            ) -> tuple[dict[str, Verdict], Metrics]:
    """Publish POSTS adjudication requests at 15/s to a worker configured for ``server``; return the verdicts
    de-duplicated by verdict_id (asserting one per post) and the worker's metrics."""
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(policy_yaml)
    settings = await cascade_settings(base, policy_path, topics_created)
    settings = settings.model_copy(update={
        "anthropic_api_key": SecretStr("test-key"),
        "adjudicator": settings.adjudicator.model_copy(update={
            "group_id": settings.topics.prefix + "adjudicate", "base_url": server.url, "timeout_s": 0.5,
            "batch_max_wait_ms": 20, "rate_per_s": 500.0, "concurrency": 4, "max_attempts": 2,
            "breaker_failures": 3, "breaker_reset_s": 0.3, "backoff_base_s": 0.05, "backoff_max_s": 0.2}),
    })
    metrics = Metrics.create(CollectorRegistry())
    stop = asyncio.Event()
    worker = asyncio.create_task(run_adjudicate_worker(settings, stop, metrics=metrics))
    records = [(f"s{i}".encode(), codec.encode(AdjudicationRequest(
        post=Post(id=f"s{i}", text=f"limited offer number {i}"), scores=SCORES, candidate_category="spam",
        model="mini", model_version="m-1", policy="default", policy_version="v", ingested_at="2026-11-24T12:00:00Z",
    ))) for i in range(POSTS)]
    try:
        await publish(await producer_factory(), settings.topics.all()["adjudication"], records, rate_per_s=15)
        verdicts = await read_verdicts(settings, POSTS, worker=worker, timeout_s=90)
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=30)
    assert sorted(v.post_id for v in verdicts.values()) == sorted(f"s{i}" for i in range(POSTS))
    assert all(v.final for v in verdicts.values())
    return verdicts, metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(f"modcascade_{name}", labels) or 0.0


@pytest.mark.parametrize("fallback", ["small_model", "hold"])
async def test_a_529_and_timeout_storm_opens_the_breaker_the_fallback_applies_and_the_breaker_closes_again(
    kafka_settings: Settings, _session_topics: list[str], tmp_path: Path, producer_factory: ProducerFactory,
    server: MessagesServer, fallback: str,
) -> None:
    storm_then_calm(server)
    policy = DEFAULT_YAML.replace("fallback: small_model", f"fallback: {fallback}")
    verdicts, metrics = await adjudicate_stream(kafka_settings, _session_topics, tmp_path, policy, producer_factory,
                                                server)

    routes = {v.route for v in verdicts.values()}
    if fallback == "small_model":
        assert routes == {"fallback", "frontier"}  # the storm's posts fell back, the later ones were adjudicated
        flagged = [v for v in verdicts.values() if v.route == "fallback"]
        assert all(v.flags == ("frontier_unavailable",) for v in flagged)
        assert sample(metrics, "fallbacks_total", reason="frontier_unavailable") == len(flagged)
    else:
        assert routes == {"frontier"}  # held through the storm, then every post adjudicated
        assert sample(metrics, "frontier_holds_total", reason="frontier_unavailable") > 0
        assert sample(metrics, "fallbacks_total", reason="frontier_unavailable") == 0
    assert sample(metrics, "frontier_calls_total", outcome="overloaded") > 0
    assert sample(metrics, "frontier_calls_total", outcome="timeout") > 0
    assert sample(metrics, "frontier_breaker_transitions_total", state="open") >= 1
    assert sample(metrics, "frontier_breaker_transitions_total", state="closed") >= 1
    assert sample(metrics, "frontier_breaker_open") == 0
    assert sample(metrics, "frontier_calls_total", outcome="ok") == len(
        [v for v in verdicts.values() if v.route == "frontier"])


async def test_a_budget_spent_mid_stream_hands_the_rest_to_the_fallback(
    kafka_settings: Settings, _session_topics: list[str], tmp_path: Path, producer_factory: ProducerFactory,
    server: MessagesServer,
) -> None:
    server.default = Reply.tool(SPAM)
    policy = DEFAULT_YAML.replace("max_requests_per_hour: 2000", "max_requests_per_hour: 20")
    verdicts, metrics = await adjudicate_stream(kafka_settings, _session_topics, tmp_path, policy, producer_factory,
                                                server)

    frontier = [v for v in verdicts.values() if v.route == "frontier"]
    over = [v for v in verdicts.values() if v.route == "fallback"]
    assert len(frontier) == 20 and len(server.requests) == 20
    assert len(over) == POSTS - 20 and all(v.flags == ("over_budget",) for v in over)
    assert all(v.cost_usd == 0 and v.rationale is None for v in over)
    assert sample(metrics, "fallbacks_total", reason="over_budget") == POSTS - 20
