"""What an adjudication ends as, whichever path asked the frontier. Pure: a request, the policy and an answer in,
records out.

    frontier_outcome   an accepted answer → Verdict(route=frontier, rationale, real cost) + Label(source=frontier)
    fallback_verdict   no usable answer   → Verdict(route=fallback, the small model's best guess, flagged)
    frontier_cost      what one reply cost, priced from its usage (a Message Batches reply at the batch discount)

The stream's :class:`~pipeline.adjudication.stage.AdjudicationStage` and the batch command's Message Batches
merge both build their records here, so a post adjudicated either way gets the same verdict and label.
"""

from __future__ import annotations

from datetime import datetime

from pipeline.adjudication.answer import Judgement
from pipeline.adjudication.backends import FrontierReply
from pipeline.policy import Policy, best_guess
from pipeline.records import AdjudicationRequest, Label, Verdict, verdict_id

MESSAGE_BATCHES_DISCOUNT = 0.5
"""Anthropic bills Message Batches requests at half the standard price, input and output alike."""


def frontier_cost(reply: FrontierReply, policy: Policy, *, discount: float = 1.0) -> float:
    u = reply.usage
    return policy.prices.frontier.cost_usd(u.input, u.output, u.cache_write, u.cache_read) * discount


def frontier_outcome(request: AdjudicationRequest, policy: Policy, reply: FrontierReply, judgement: Judgement,
                     *, cost: float, now: datetime) -> tuple[Verdict, Label]:
    post = request.post
    category = judgement.category
    verdict = Verdict(
        verdict_id=verdict_id(post.id, policy.version), post_id=post.id, decision=judgement.decision,
        category=None if category == policy.taxonomy.safe else category, scores=request.scores,
        route="frontier", final=True, model=policy.adjudication.model, model_version=reply.model,
        policy=policy.name, policy_version=policy.version, latency_ms=latency_ms(request, now),
        cost_usd=cost, rationale=judgement.rationale, decided_at=now,
    )
    label = Label(post_id=post.id, text=post.text, label=category, source="frontier", model_scores=request.scores,
                  model_version=request.model_version, policy_version=policy.version, labelled_at=now)
    return verdict, label


def fallback_verdict(request: AdjudicationRequest, policy: Policy, *, reason: str, spent: float,
                     now: datetime) -> Verdict:
    """The policy's ``small_model`` fallback: the best guess of the small model, final, flagged with ``reason``.
    A best guess that would escalate again is allowed (the frontier was the only way to settle it)."""
    post = request.post
    outcome = best_guess(request.scores, policy)
    return Verdict(
        verdict_id=verdict_id(post.id, policy.version), post_id=post.id,
        decision="allow" if outcome.kind == "escalate" else outcome.kind, category=outcome.category,
        scores=request.scores, route="fallback", final=True, model=request.model,
        model_version=request.model_version, policy=policy.name, policy_version=policy.version,
        latency_ms=latency_ms(request, now), cost_usd=spent, flags=(reason,), decided_at=now,
    )


def latency_ms(request: AdjudicationRequest, now: datetime) -> float:
    origin = request.post.created_at or request.ingested_at
    return max(0.0, (now - origin).total_seconds() * 1000.0)
