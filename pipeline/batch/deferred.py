"""Deferrable escalations in Message Batches: what each request's result becomes. Pure: no I/O.

    succeeded, usable answer      → the frontier verdict and label (the stream's records), at the batch price
    succeeded, unusable answer    → submitted again while attempts remain, then the policy's fallback
    expired, canceled, or an error of the service (overloaded, api_error, rate limit)
                                  → submitted again while attempts remain (always, under ``fallback: hold``),
                                    then ``small_model``: the flagged fallback verdict
    an error of the request (invalid_request, ...)
                                  → at once the fallback (``hold``: a dead letter, since waiting cannot fix it)

What a request has cost so far travels with it (``spent``), so a verdict's cost is every call made for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline import codec
from pipeline.adjudication.answer import AnswerProblem, parse_answer
from pipeline.adjudication.message_batches import BatchItem
from pipeline.adjudication.outcomes import (
    MESSAGE_BATCHES_DISCOUNT,
    fallback_verdict,
    frontier_cost,
    frontier_outcome,
)
from pipeline.adjudication.stage import ANSWER_STAGE
from pipeline.policy import Policy
from pipeline.records import AdjudicationRequest, DeadLetter, Record


@dataclass(frozen=True, slots=True)
class DeferredEntry:
    """One line of the deferred journal: a request and what was spent on it in earlier submissions."""

    request: AdjudicationRequest
    spent: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"spent": self.spent, "request": self.request.model_dump(mode="json")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeferredEntry:
        return cls(AdjudicationRequest.model_validate(data["request"]), float(data["spent"]))


@dataclass(frozen=True, slots=True)
class Settled:
    records: list[Record]
    """The final verdict (and label), or a dead letter; empty when the request goes round again."""
    retry: DeferredEntry | None = None
    reason: str | None = None
    """Why it did not settle on the frontier's answer (a fallback flag or dead-letter reason)."""
    cost: float = 0.0
    """What this submission cost (zero unless the request succeeded)."""


def settle(item: BatchItem | None, entry: DeferredEntry, policy: Policy, *, max_attempts: int,
           now: datetime) -> Settled:
    """The outcome of one submission of ``entry``; ``item`` None means the results did not mention it (treated
    like an expired request)."""
    attempts = entry.request.attempt + 1
    if item is not None and item.outcome == "succeeded" and item.reply is not None:
        cost = frontier_cost(item.reply, policy, discount=MESSAGE_BATCHES_DISCOUNT)
        spent = entry.spent + cost
        judgement = parse_answer(item.reply.content, item.reply.stop_reason, policy)
        if not isinstance(judgement, AnswerProblem):
            verdict, label = frontier_outcome(entry.request, policy, item.reply, judgement, cost=spent, now=now)
            return Settled([verdict, label], cost=cost)
        reason = f"frontier_{judgement.kind}"
        if attempts < max_attempts:
            return Settled([], retry=_again(entry, spent), reason=reason, cost=cost)
        return _give_up(DeferredEntry(entry.request, spent), policy, reason, unusable=True, attempts=attempts,
                        now=now, cost=cost)
    if item is not None and not item.transient:
        return _give_up(entry, policy, "frontier_rejected", unusable=True, attempts=attempts, now=now,
                        detail=f"{item.error_type}: {item.error_message}")
    reason = "frontier_expired" if item is None or item.outcome == "expired" else "frontier_unavailable"
    if attempts < max_attempts or policy.fallback == "hold":
        return Settled([], retry=_again(entry, entry.spent), reason=reason)
    return _give_up(entry, policy, reason, unusable=False, attempts=attempts, now=now)


def _again(entry: DeferredEntry, spent: float) -> DeferredEntry:
    request = entry.request.model_copy(update={"attempt": entry.request.attempt + 1})
    return DeferredEntry(request, spent)


def _give_up(entry: DeferredEntry, policy: Policy, reason: str, *, unusable: bool, attempts: int, now: datetime,
             cost: float = 0.0, detail: str = "") -> Settled:
    if policy.fallback == "small_model" or not unusable:
        verdict = fallback_verdict(entry.request, policy, reason=reason, spent=entry.spent, now=now)
        return Settled([verdict], reason=reason, cost=cost)
    error = ValueError(detail or f"{attempts} Message Batches submissions without a usable answer ({reason})")
    letter = DeadLetter.of(codec.encode(entry.request), stage=ANSWER_STAGE, error=error, reason=reason,
                           key=entry.request.post.id.encode(), attempts=attempts)
    return Settled([letter], reason=reason, cost=cost)
