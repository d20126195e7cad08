"""The action guard's pure core (docs/guard.md): no I/O, no clock of its own.

    guard_outcome  what :func:`~pipeline.policy.decide` decided, and the categories whose guard is tripped -> the
                   outcome in force: a block in a guarded category becomes ``escalate`` (``guard.divert:
                   adjudication``) or ``review`` (``divert: review``); every other outcome stays as it is
    GuardBoard     the guards in force, built from the ``control`` topic's GuardState records (the latest per key)
    trips          the monitor's alerts -> the GuardState records that trip guards (``block_rate`` alerts only)
    clearing       the guards in force -> the GuardState records an operator publishes to clear them

A guard never drops or delays a post: it only changes which final decision a post can get without a second look.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta

from pipeline.policy.decide import Outcome, OutcomeKind
from pipeline.policy.model import Policy
from pipeline.records import Alert, GuardState


def guard_outcome(outcome: Outcome, scores: Mapping[str, float], policy: Policy,
                  tripped: AbstractSet[str]) -> tuple[Outcome, str | None]:
    """The outcome in force for one post, and the guarded category when a guard changed it (else ``None``).

    Only ``block`` outcomes change, and only when their category is in ``tripped`` (and ``policy.guard.enabled``):

    1. If another category that is not guarded also blocks the post (score at or above its ``block_at``, action
       ``block``), the post is blocked for that one: the guard holds back its own category's blocks, not others'.
       Among several, the highest score wins, then taxonomy order (as in :func:`~pipeline.policy.decide`).
    2. Else the block becomes ``escalate`` (``guard.divert: adjudication``: the frontier model decides) or
       ``review`` (``divert: review``: a final review verdict), for the guarded category.

    ``scores`` are those ``outcome`` was decided on (so they hold every taxonomy category).
    """
    if outcome.kind != "block" or outcome.category not in tripped or not policy.guard.enabled:
        return outcome, None
    other: str | None = None
    other_score = -1.0
    for category, _allow_below, block_at, action, _strength in policy.rules:
        if action != "block" or category in tripped:
            continue
        p = scores[category]
        if p >= block_at and p > other_score:  # strict: the earlier category keeps a tie
            other, other_score = category, p
    if other is not None:
        return Outcome("block", other), None
    kind: OutcomeKind = "escalate" if policy.guard.divert == "adjudication" else "review"
    return Outcome(kind, outcome.category), outcome.category


class GuardBoard:
    """The guards in force, as every classify worker keeps them: fed the ``control`` topic's records in order
    (:meth:`apply`); the latest record per ``policy/category`` is the state (as on the compacted topic).

    Not thread-safe; one asyncio loop feeds and reads it.
    """

    def __init__(self) -> None:
        self._states: dict[str, GuardState] = {}

    def apply(self, state: GuardState) -> None:
        """The record read next from the control topic (it replaces the earlier state of its key)."""
        self._states[state.key] = state

    def remove(self, key: str) -> None:
        """A tombstone (a record with no value) for ``key``: the guard is gone, as if never tripped."""
        self._states.pop(key, None)

    def tripped(self, policy: str, now: datetime) -> frozenset[str]:
        """The categories of ``policy`` whose guard is in force at ``now`` (tripped and not expired)."""
        return frozenset(s.category for s in self._states.values() if s.policy == policy and s.in_force(now))

    def states(self) -> list[GuardState]:
        """The latest state of every guard seen, by key."""
        return [self._states[key] for key in sorted(self._states)]

    def __len__(self) -> int:
        return len(self._states)


def trips(alerts: Iterable[Alert], policy: Policy, now: datetime) -> list[GuardState]:
    """The GuardState records the monitor publishes for ``alerts`` under ``policy``'s ``guard:`` section: one
    tripped guard per ``block_rate`` alert (whose policy and category it guards), expiring after
    ``guard.reset_after_s`` when that is set. None when ``guard.enabled`` is false."""
    if not policy.guard.enabled:
        return []
    reset = policy.guard.reset_after_s
    expires = now + timedelta(seconds=reset) if reset is not None else None
    return [
        GuardState(policy=alert.policy, category=alert.category, tripped=True, by="monitor", reason=alert.message,
                   alert_id=alert.alert_id, block_rate=min(1.0, max(0.0, alert.value)),
                   reference=None if alert.reference is None else min(1.0, max(0.0, alert.reference)),
                   window_start=alert.window_start, expires_at=expires, changed_at=now)
        for alert in alerts
        if alert.kind == "block_rate" and alert.category is not None
    ]


def clearing(states: Iterable[GuardState], now: datetime, *, policy: str | None = None, category: str | None = None,
             note: str = "") -> list[GuardState]:
    """The records that clear the guards in force at ``now`` among ``states`` (the latest per key), narrowed to
    ``policy`` and ``category`` when given. A guard already cleared or expired gets no record."""
    latest = {s.key: s for s in states}
    return [
        GuardState(policy=s.policy, category=s.category, tripped=False, by="operator",
                   reason=note or "cleared by an operator", alert_id=s.alert_id, changed_at=now)
        for _, s in sorted(latest.items())
        if s.in_force(now) and (policy is None or s.policy == policy) and (category is None or s.category == category)
    ]
