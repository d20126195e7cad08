"""Three adjudicate replicas share one hourly escalation budget on the broker (docs/adjudication.md, "Several
replicas"): each spends the allowance of the ``adjudication`` partitions it holds, and the spend booked on a
partition (its ledger on the compacted ``budget`` topic) moves with the partition when one replica stops and the
others take over. The real ``anthropic`` SDK against the scripted Messages API server counts every call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from pipeline import codec
from pipeline.kafka.readback import read_to_end
from pipeline.metrics import Metrics
from pipeline.records import AdjudicationRequest, BudgetLedger, Post
from pipeline.services import run_adjudicate_worker
from pipeline.settings import Settings
from tests.support.cascade import REPO, cascade_settings, publish, read_verdicts
from tests.support.frontier import MessagesServer, Reply
from tests.support.kafka import ProducerFactory

pytestmark = pytest.mark.broker

CAP = 20
POSTS = 120
SCORES = {"safe": 0.40, "spam": 0.55, "harassment": 0.01, "hate": 0.01, "sexual": 0.01, "violence": 0.01,
          "self_harm": 0.02}
SPAM = {"category": "spam", "decision": "block", "rationale": "Unsolicited promotion."}


class Replica:
    def __init__(self, settings: Settings) -> None:
        self.metrics = Metrics.create(CollectorRegistry())
        self.stop, self.ready = asyncio.Event(), asyncio.Event()
        self.task = asyncio.create_task(run_adjudicate_worker(settings, self.stop, metrics=self.metrics,
                                                              on_ready=self.ready))

    def calls(self) -> float:
        return self.metrics.registry.get_sample_value("modcascade_frontier_calls_total", {"outcome": "ok"}) or 0.0

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


def request(i: int) -> tuple[bytes, bytes]:
    return f"b{i}".encode(), codec.encode(AdjudicationRequest(
        post=Post(id=f"b{i}", text=f"limited offer number {i}"), scores=SCORES, candidate_category="spam",
        model="mini", model_version="m-1", policy="default", policy_version="v", ingested_at="2026-11-24T12:00:00Z"))


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_three_replicas_spend_no_more_than_the_hourly_budget_across_a_rebalance(
    kafka_settings: Settings, _session_topics: list[str], tmp_path: Path, producer_factory: ProducerFactory,
    concurrency: int,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text((REPO / "policies" / "default.yaml").read_text().replace(
        "max_requests_per_hour: 2000", f"max_requests_per_hour: {CAP}"))
    settings = await cascade_settings(kafka_settings, policy, _session_topics)
    async with MessagesServer() as server:
        server.default = Reply.tool(SPAM, delay_s=0.05)
        settings = settings.model_copy(update={
            "anthropic_api_key": SecretStr("test-key"),
            "adjudicator": settings.adjudicator.model_copy(update={
                "group_id": settings.topics.prefix + "adjudicate", "base_url": server.url, "batch_max_posts": 8,
                "batch_max_wait_ms": 20, "rate_per_s": 500.0, "concurrency": concurrency, "max_attempts": 2})})
        topics = settings.topics.all()
        replicas = [Replica(settings) for _ in range(3)]
        try:
            for replica in replicas:
                await asyncio.wait_for(replica.ready.wait(), 60)
            producer = await producer_factory()
            await publish(producer, topics["adjudication"], [request(i) for i in range(POSTS // 2)], rate_per_s=40)
            # One replica leaves mid-stream: its partitions, and the spend booked on them, go to the other two.
            leaving = replicas.pop(0)
            await leaving.close()
            await publish(producer, topics["adjudication"], [request(i) for i in range(POSTS // 2, POSTS)],
                          rate_per_s=40)
            verdicts = await read_verdicts(settings, POSTS, worker=replicas[0].task, timeout_s=90)
        finally:
            for replica in replicas:
                await replica.close()
        calls = len(server.requests)

    # Every post got one final verdict; the frontier was asked CAP times in all, whatever the calls in flight at once
    # (each call reserves its room before it is sent).
    assert sorted(v.post_id for v in verdicts.values()) == sorted(f"b{i}" for i in range(POSTS))
    frontier = [v for v in verdicts.values() if v.route == "frontier"]
    fallback = [v for v in verdicts.values() if v.route == "fallback"]
    assert all(v.flags == ("over_budget",) for v in fallback)
    assert len(frontier) + len(fallback) == POSTS
    assert calls == CAP, f"{calls} frontier calls for an hourly cap of {CAP}"
    print(f"\nfrontier calls by 3 replicas (concurrency {concurrency}, one left mid-stream) for a cap of {CAP}/h: "
          f"{calls}; fallbacks: {len(fallback)}")

    # The ledgers on the budget topic add up to the calls booked.
    ledgers: dict[str, BudgetLedger] = {}
    for message in await read_to_end(settings, [topics["budget"]]):
        ledger = codec.decode(message.value or b"", BudgetLedger)
        ledgers[ledger.key] = ledger
    assert sum(r for ledger in ledgers.values() for _, r, _ in ledger.entries) == calls
