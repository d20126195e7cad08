"""Routing: one post, its scores and the policy's outcome become the record to publish. Pure, no I/O.

    final outcome (allow / block / review)  ->  Verdict on ``verdicts`` (route slm, or cache on a repeat)
    escalate                                ->  AdjudicationRequest on ``adjudication``
    a final verdict drawn for the audit     ->  also an AdjudicationRequest marked ``audit`` (the verdict stays)
    with a shadow (candidate) policy, also  ->  ShadowDecision on ``shadow`` (never a verdict)

Latency is measured from the post's ``created_at`` when the producer set it, else from when the post
entered Kafka (the record timestamp), else from when the worker read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pipeline.policy import Outcome, Policy
from pipeline.records import (
    SCHEMA_VERSION,
    AdjudicationRequest,
    AuditedVerdict,
    Post,
    ShadowDecision,
    Verdict,
    verdict_id,
)

SmallModelRoute = Literal["slm", "cache"]


@dataclass(frozen=True, slots=True)
class ModelRef:
    """The small model that produced the scores, as recorded in every output."""

    name: str
    version: str


def ingest_time(record_timestamp_ms: int | None, read_at: datetime) -> datetime:
    """When a post entered the pipeline: its Kafka record timestamp, else when the worker read it."""
    if record_timestamp_ms is not None and record_timestamp_ms > 0:
        return datetime.fromtimestamp(record_timestamp_ms / 1000, UTC)
    return read_at


def origin_ms(post: Post, record_timestamp_ms: int | None, read_at_ms: float) -> float:
    """When the clock of a post's latency starts (see the module docstring), in epoch milliseconds: float arithmetic,
    as the classify stage takes one per post (datetimes cost ~0.5 µs more)."""
    if post.created_at is not None:
        return post.created_at.timestamp() * 1000.0
    if record_timestamp_ms is not None and record_timestamp_ms > 0:
        return float(record_timestamp_ms)
    return read_at_ms


def small_model_cost(route: SmallModelRoute, policy: Policy) -> float:
    """Estimated cost of one small-model verdict: a share of the model's price, nothing for a cache hit."""
    return 0.0 if route == "cache" else policy.prices.small_model_usd_per_1k_posts / 1000.0


def make_verdict(
    post: Post,
    scores: Mapping[str, float],
    outcome: Outcome,
    *,
    route: SmallModelRoute,
    policy: Policy,
    model: ModelRef,
    origin: datetime,
    now: datetime,
    guard: str | None = None,
) -> Verdict:
    """The final verdict of a post the small model settled; ``guard`` names the category whose tripped action
    guard turned its block into this (review) verdict. ``outcome`` is :func:`~pipeline.policy.decide`'s on these
    ``scores`` (which it checked: every label, each in [0, 1]), so the verdict is assembled without validating it
    again (:meth:`~pipeline.records.Record.assemble`). A batch builds its verdicts with one
    :class:`SmallModelVerdicts`."""
    return SmallModelVerdicts(policy, model, now)(post, scores, outcome, route, origin.timestamp() * 1000.0, guard)


class SmallModelVerdicts:
    """:func:`make_verdict` for every post of one batch: what the batch's verdicts share (policy, model, decision
    time, the cost per route) is read once, and each verdict is one positional call (the classify stage makes one
    per post)."""

    __slots__ = ("_cost", "_model", "_model_version", "_now", "_now_ms", "_policy", "_version")

    def __init__(self, policy: Policy, model: ModelRef, now: datetime) -> None:
        self._policy, self._version = policy.name, policy.version
        self._model, self._model_version = model.name, model.version
        self._now, self._now_ms = now, now.timestamp() * 1000.0
        self._cost = {"slm": small_model_cost("slm", policy), "cache": small_model_cost("cache", policy)}

    def __call__(self, post: Post, scores: Mapping[str, float], outcome: Outcome, route: SmallModelRoute,
                 origin_ms: float, guard: str | None = None) -> Verdict:
        """The verdict; its latency runs from ``origin_ms`` (:func:`origin_ms`) to the batch's decision time."""
        if outcome.kind == "escalate":
            raise ValueError("an escalated post gets an AdjudicationRequest, not a verdict")
        now = self._now
        return Verdict.assemble({  # every value valid by construction: the scores passed decide(), the rest is typed
            "schema_version": SCHEMA_VERSION,
            "verdict_id": verdict_id(post.id, self._version),
            "post_id": post.id,
            "decision": outcome.kind,
            "category": outcome.category,
            "scores": dict(scores),
            "route": route,
            "final": True,
            "model": self._model,
            "model_version": self._model_version,
            "policy": self._policy,
            "policy_version": self._version,
            "latency_ms": max(0.0, self._now_ms - origin_ms),
            "cost_usd": self._cost[route],
            "rationale": None,
            "flags": (),
            "supersedes": None,
            "guard": guard,
            "decided_at": now,
        })


def make_adjudication(
    post: Post,
    scores: Mapping[str, float],
    outcome: Outcome,
    *,
    policy: Policy,
    model: ModelRef,
    ingested_at: datetime,
    now: datetime,
    guard: str | None = None,
) -> AdjudicationRequest:
    """The request that sends a borderline post to the frontier model, in its category's queue tier; ``guard``
    names the category whose tripped action guard sent it instead of blocking it."""
    category = outcome.category
    tier = policy.categories[category].tier if category is not None else "urgent"
    return AdjudicationRequest(
        post=post,
        scores=dict(scores),
        candidate_category=category,
        model=model.name,
        model_version=model.version,
        policy=policy.name,
        policy_version=policy.version,
        tier=tier,
        attempt=0,
        guard=guard,
        ingested_at=ingested_at,
        enqueued_at=now,
    )


def make_audit(post: Post, verdict: Verdict, *, ingested_at: datetime, now: datetime) -> AdjudicationRequest:
    """The request that sends a published small-model verdict to the frontier again, as an audit (deferrable: it
    settles nothing a user waits for)."""
    if verdict.route not in ("slm", "cache"):
        raise ValueError(f"only the small model's verdicts are audited, not route {verdict.route!r}")
    return AdjudicationRequest(
        post=post,
        scores=verdict.scores,
        candidate_category=verdict.category,
        model=verdict.model,
        model_version=verdict.model_version,
        policy=verdict.policy,
        policy_version=verdict.policy_version,
        tier="deferrable",
        attempt=0,
        ingested_at=ingested_at,
        enqueued_at=now,
        audit=True,
        audited=AuditedVerdict(verdict_id=verdict.verdict_id, decision=verdict.decision, category=verdict.category,
                               route=verdict.route),
    )


def make_shadow(post: Post, scores: Mapping[str, float], live: Outcome, shadow: Outcome, *, live_policy: Policy,
                shadow_policy: Policy, model: ModelRef, now: datetime) -> ShadowDecision:
    """What the candidate (shadow) policy would have decided, next to what the live one did."""
    return ShadowDecision(
        post_id=post.id, scores=dict(scores), model_version=model.version,
        live_policy_version=live_policy.version, live_decision=live.kind, live_category=live.category,
        shadow_policy=shadow_policy.name, shadow_policy_version=shadow_policy.version,
        shadow_decision=shadow.kind, shadow_category=shadow.category, decided_at=now,
    )
