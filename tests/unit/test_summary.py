"""The run summary: counts by post id (duplicates once), latency percentiles, cost against all-frontier."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.app.summary import RunSummary, percentile
from pipeline.policy import load_policy
from pipeline.records import AdjudicationRequest, DeadLetter, Post, Verdict
from tests.support.samples import SCORES, T0

POLICY = load_policy(Path(__file__).resolve().parents[2] / "policies" / "default.yaml")


def verdict(post_id: str, decision: str = "allow", route: str = "slm", latency_ms: float = 10.0) -> Verdict:
    return Verdict(verdict_id=post_id, post_id=post_id, decision=decision, category=None if decision == "allow"
                   else "spam", scores=SCORES, route=route, model="m", model_version="1", policy="default",
                   policy_version=POLICY.version, latency_ms=latency_ms,
                   cost_usd=0.0 if route == "cache" else 0.000002)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None


def test_duplicates_count_once_and_every_output_kind_is_accounted() -> None:
    summary = RunSummary(POLICY)
    request = AdjudicationRequest(post=Post(id="p3", text="x"), scores=SCORES, candidate_category="spam", model="m",
                                  model_version="1", policy="default", policy_version=POLICY.version,
                                  ingested_at=T0, enqueued_at=T0 + timedelta(milliseconds=40))
    letter = DeadLetter.of(b"{", stage="classify.intake", error=ValueError("bad"), reason="invalid_json",
                           topic="posts", partition=0, offset=7)
    for record in (verdict("p1"), verdict("p1"), verdict("p2", "block", "cache"), request, request, letter, letter):
        summary.add(record)
    assert summary.records == 4 and summary.decided == 3 and summary.duplicates == 3
    assert summary.decisions == {"allow": 1, "block": 1}
    assert summary.cache_hit_rate == 0.5 and summary.escalation_rate == pytest.approx(1 / 3)
    assert summary.dead_letters == {"invalid_json": 1}
    assert sorted(summary.latencies_ms) == [10.0, 10.0, 40.0]


def test_cost_compares_the_cascade_with_sending_everything_to_the_frontier() -> None:
    summary = RunSummary(POLICY)
    for i in range(9):
        summary.add(verdict(f"p{i}"))
    summary.add(AdjudicationRequest(post=Post(id="e", text="x"), scores=SCORES, candidate_category="spam", model="m",
                                    model_version="1", policy="default", policy_version=POLICY.version,
                                    ingested_at=T0, enqueued_at=T0))
    per_post = POLICY.prices.est_frontier_usd_per_post
    assert summary.all_frontier_usd == pytest.approx(10 * per_post)
    small = POLICY.prices.small_model_usd_per_1k_posts / 1000
    assert summary.cascade_usd == pytest.approx(9 * 0.000002 + small + per_post)


def escalation(post_id: str) -> AdjudicationRequest:
    return AdjudicationRequest(post=Post(id=post_id, text="x"), scores=SCORES, candidate_category="spam", model="m",
                               model_version="1", policy="default", policy_version=POLICY.version, ingested_at=T0,
                               enqueued_at=T0)


def test_an_escalated_post_awaits_its_final_verdict_whose_real_cost_replaces_the_estimate() -> None:
    summary = RunSummary(POLICY)
    for record in (verdict("p1"), escalation("e1"), escalation("e2"), escalation("e3")):
        summary.add(record)
    assert summary.awaiting == 3 and summary.records == 4
    frontier = verdict("e1", "block", "frontier", latency_ms=900.0).model_copy(update={"cost_usd": 0.004})
    fallback = verdict("e2", "allow", "fallback").model_copy(update={"cost_usd": 0.0, "flags": ("over_budget",)})
    for record in (frontier, frontier, fallback):
        summary.add(record)

    assert summary.records == 4, "a final verdict for an escalated post is not a new input record"
    assert summary.awaiting == 1 and summary.adjudicated == 2 and summary.duplicates == 1
    assert summary.routes == {"slm": 1, "frontier": 1, "fallback": 1}
    assert summary.fallback_flags == {"over_budget": 1}
    assert summary.frontier_usd == pytest.approx(0.004)
    assert summary.adjudication_latencies_ms == [900.0, 10.0] and summary.latencies_ms == [10.0, 0.0, 0.0, 0.0]
    prices = POLICY.prices
    assert summary.cascade_usd == pytest.approx(0.000002 + 3 * prices.small_model_usd_per_1k_posts / 1000 + 0.004
                                                + prices.est_frontier_usd_per_post)
