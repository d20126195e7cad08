"""What an adjudication ends as, whichever path asked the frontier. Pure: a request, the policy and an answer in,
records out.

    frontier_outcome   an accepted answer → Verdict(route=frontier, rationale, real cost) + Label(source=frontier)
    fallback_verdict   no usable answer   → Verdict(route=fallback, the small model's best guess, flagged)
    audit_label        an accepted answer to an audit → Label(source=frontier, audit, agrees) and no verdict
    frontier_cost      what one reply cost, priced from its usage (a Message Batches reply at the batch discount)

The stream's :class:`~pipeline.adjudication.stage.AdjudicationStage` and the batch command's Message Batches
merge both build their records here, so a post adjudicated either way gets the same verdict and label.
"""

from __future__ import annotations

from datetime import datetime

from pipeline.adjudication.answer import Judgement
from pipeline.adjudication.backends import FrontierReply
from pipeline.policy import Outcome, Policy, best_guess, guard_outcome
from pipeline.records import AdjudicationRequest, AuditedVerdict, Label, Verdict, verdict_id

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
        cost_usd=cost, rationale=judgement.rationale, guard=request.guard, decided_at=now,
    )
    label = Label(post_id=post.id, text=post.text, label=category, source="frontier", model_scores=request.scores,
                  model_version=request.model_version, policy_version=policy.version, labelled_at=now)
    return verdict, label


def audit_agrees(audited: AuditedVerdict, judgement: Judgement, policy: Policy) -> bool:
    """Whether the frontier's judgement agrees with the audited verdict: the same category, where an allowed
    verdict's category is the safe class. Categories, not decisions: live precision is per category, and a
    Label carries a category only (so a human's label can be compared the same way)."""
    return judgement.category == (audited.category or policy.taxonomy.safe)


def audit_label(request: AdjudicationRequest, policy: Policy, judgement: Judgement, *, cost: float,
                now: datetime) -> Label:
    """The outcome of an audit: the frontier's label of the post, marked as audit, agreeing with the published
    verdict or not. Never a verdict: the published one stays."""
    audited = request.audited
    if audited is None:
        raise ValueError("not an audit request: settle it with frontier_outcome")
    post = request.post
    return Label(post_id=post.id, text=post.text, label=judgement.category, source="frontier",
                 model_scores=request.scores, model_version=request.model_version, policy_version=policy.version,
                 labelled_at=now, verdict_id=audited.verdict_id, audit=True,
                 agrees=audit_agrees(audited, judgement, policy), rationale=judgement.rationale, audited=audited,
                 cost_usd=cost)


def fallback_verdict(request: AdjudicationRequest, policy: Policy, *, reason: str, spent: float,
                     now: datetime) -> Verdict:
    """The policy's ``small_model`` fallback: the best guess of the small model, final, flagged with ``reason``.
    A best guess that would escalate again is allowed (the frontier was the only way to settle it). A request a
    tripped action guard sent (``request.guard``) is never blocked for the guarded category: that becomes review."""
    post = request.post
    outcome = best_guess(request.scores, policy)
    if request.guard is not None:
        # A tripped guard sent this block here for a second look: without one, the fallback must not block it for
        # the guarded category either (another category may still block it), so it goes to human review.
        outcome, diverted = guard_outcome(outcome, request.scores, policy, {request.guard})
        if diverted is not None:
            outcome = Outcome("review", diverted)
    return Verdict(
        verdict_id=verdict_id(post.id, policy.version), post_id=post.id,
        decision="allow" if outcome.kind == "escalate" else outcome.kind, category=outcome.category,
        scores=request.scores, route="fallback", final=True, model=request.model,
        model_version=request.model_version, policy=policy.name, policy_version=policy.version,
        latency_ms=latency_ms(request, now), cost_usd=spent, flags=(reason,), guard=request.guard, decided_at=now,
    )


def latency_ms(request: AdjudicationRequest, now: datetime) -> float:
    origin = request.post.created_at or request.ingested_at
    return max(0.0, (now - origin).total_seconds() * 1000.0)
