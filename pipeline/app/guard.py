"""``modcascade guard status|clear``: the action guards on the ``control`` topic, shown and cleared by an operator.

    status  the latest state of every guard (narrowed by --policy/--category): tripped, cleared or expired
    clear   publish a cleared GuardState for every guard in force that matches; the classify workers follow the
            topic and decide normally again from their next batch on

The records and the logic are in :mod:`pipeline.policy.guard` (pure) and :mod:`pipeline.kafka.control` (the topic).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TextIO

from pipeline.kafka.control import publish_guards, read_guards
from pipeline.policy import clearing
from pipeline.records import GuardState, utcnow
from pipeline.settings import Settings


def describe(state: GuardState, now: datetime) -> str:
    """One line about a guard, for people."""
    if state.in_force(now):
        status = "TRIPPED"
    elif state.tripped:
        status = "expired"
    else:
        status = "cleared"
    parts = [f"{state.key}: {status} by {state.by} at {state.changed_at.isoformat(timespec='seconds')}"]
    if state.tripped and state.block_rate is not None:
        reference = f" (reference {state.reference:.1%})" if state.reference is not None else ""
        parts.append(f"block rate {state.block_rate:.1%}{reference}")
    if state.tripped and state.expires_at is not None:
        parts.append(f"resets at {state.expires_at.isoformat(timespec='seconds')}")
    if state.reason:
        parts.append(state.reason)
    return "; ".join(parts)


def _matching(states: Sequence[GuardState], policy: str | None, category: str | None) -> list[GuardState]:
    return [s for s in states
            if (policy is None or s.policy == policy) and (category is None or s.category == category)]


async def guard_status(settings: Settings, out: TextIO, *, policy: str | None = None,
                       category: str | None = None) -> list[GuardState]:
    """Print the guards that match; returns those in force."""
    now = utcnow()
    states = _matching(await read_guards(settings), policy, category)
    if not states:
        out.write("no action guard has been tripped\n")
    for state in states:
        out.write(describe(state, now) + "\n")
    return [s for s in states if s.in_force(now)]


async def guard_clear(settings: Settings, out: TextIO, *, policy: str | None = None, category: str | None = None,
                      note: str = "") -> list[GuardState]:
    """Clear the guards in force that match (all of them when neither is given); returns the records published."""
    now = utcnow()
    cleared = clearing(await read_guards(settings), now, policy=policy, category=category, note=note)
    await publish_guards(settings, cleared)
    if not cleared:
        out.write("no tripped guard matches: nothing to clear\n")
    for state in cleared:
        out.write(f"cleared {state.key}\n")
    return cleared
