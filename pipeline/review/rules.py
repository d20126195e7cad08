"""Queue rules and claims: pure functions, no database and no clock of their own (``now`` is passed in).

Queues, in the order a reviewer is offered them:

    review    final verdicts whose decision is ``review`` (a policy band's action: a person decides)
    audit     audit labels where the frontier disagreed with a confident small-model verdict
    fallback  final verdicts the policy's fallback decided while the frontier was down or over budget
    qa        a seeded random share of frontier verdicts, to measure how often people agree with the frontier

A verdict lands in at most one queue (the first that applies); verdicts of the console itself (route human)
and non-final verdicts never do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pipeline.records import Label, Verdict

Queue = Literal["review", "audit", "fallback", "qa"]
QUEUES: tuple[Queue, ...] = ("review", "audit", "fallback", "qa")
QUEUE_TITLES: dict[Queue, str] = {
    "review": "Policy review",
    "audit": "Audit disagreements",
    "fallback": "Fallback verdicts",
    "qa": "Frontier QA sample",
}


def qa_sampled(verdict_id: str, rate: float, seed: int) -> bool:
    """Whether a frontier verdict is in the QA sample: a hash of seed and verdict id against ``rate``.

    Reproducible (the same seed picks the same verdicts, also when a verdict is re-delivered) and independent
    of arrival order, so a share ``rate`` of verdicts is picked without a random generator's state.
    """
    if rate <= 0.0:
        return False
    digest = hashlib.sha256(f"{seed}\x1fqa\x1f{verdict_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def queue_of_verdict(verdict: Verdict, *, qa_rate: float, qa_seed: int) -> Queue | None:
    """The queue a consumed verdict goes to, or None."""
    if not verdict.final or verdict.route == "human":
        return None
    if verdict.decision == "review":
        return "review"
    if verdict.route == "fallback":
        return "fallback"
    if verdict.route == "frontier" and qa_sampled(verdict.verdict_id, qa_rate, qa_seed):
        return "qa"
    return None


def queue_of_label(label: Label) -> Queue | None:
    """Audit labels that disagree with the audited verdict go to the audit queue; other labels to none."""
    return "audit" if label.audit and label.agrees is False else None


def item_key(queue: Queue, subject: str) -> str:
    """The unique key of a queue item (``subject``: the verdict id, or for audit labels the audited verdict's id
    or else the post id): a re-delivered record maps to the same key and creates no second item."""
    return f"{queue}:{subject}"


@dataclass(frozen=True, slots=True)
class Claim:
    """Who holds an item and until when (both None: nobody)."""

    reviewer: str | None
    expires_at: datetime | None

    def holder(self, now: datetime) -> str | None:
        """The reviewer whose claim is live at ``now``, or None (unclaimed or expired)."""
        if self.reviewer is None or self.expires_at is None or self.expires_at <= now:
            return None
        return self.reviewer

    def may_take(self, reviewer: str, now: datetime) -> bool:
        """A reviewer may claim an item nobody holds, one whose claim expired, or one they hold already."""
        holder = self.holder(now)
        return holder is None or holder == reviewer


def claim_expiry(now: datetime, ttl_s: float) -> datetime:
    return now + timedelta(seconds=ttl_s)


def replaces(current: Verdict | None, incoming: Verdict) -> bool:
    """Whether ``incoming`` becomes the post's current final verdict instead of ``current``.

    A superseding (human) verdict replaces the one it names; a verdict that was superseded never comes back;
    otherwise the later decision wins (a post re-decided under a new policy version). A re-delivered verdict
    changes nothing.
    """
    if not incoming.final:
        return False
    if current is None:
        return True
    if incoming.verdict_id == current.verdict_id or current.supersedes == incoming.verdict_id:
        return False
    if incoming.supersedes == current.verdict_id:
        return True
    return incoming.decided_at >= current.decided_at
