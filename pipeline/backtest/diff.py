"""The posts whose decision changes between two policies. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.backtest.outcome import PostOutcome


@dataclass(frozen=True, slots=True)
class Change:
    id: str
    label: str
    text: str
    before: PostOutcome
    after: PostOutcome

    def to_json(self) -> dict[str, Any]:
        def side(o: PostOutcome) -> dict[str, Any]:
            return {"stage": o.stage, "decision": o.decision, "category": o.category, "route": o.route}

        return {"id": self.id, "label": self.label, "text": self.text, "before": side(self.before),
                "after": side(self.after)}


def decision_key(o: PostOutcome) -> tuple[str, str, str | None]:
    """What counts as the decision: the classify stage's outcome and the final decision and category."""
    return o.stage, o.decision, o.category


def changes(before: Sequence[PostOutcome], after: Sequence[PostOutcome], texts: Mapping[str, str]) -> list[Change]:
    """The posts (in ``before``'s order) whose decision differs; both sides must hold the same posts."""
    by_id = {o.id: o for o in after}
    if set(by_id) != {o.id for o in before}:
        raise ValueError("the two replays hold different posts")
    return [Change(o.id, o.label, texts.get(o.id, ""), o, by_id[o.id]) for o in before
            if decision_key(o) != decision_key(by_id[o.id])]


def transitions(found: Sequence[Change]) -> dict[str, int]:
    """How many posts moved from one final decision to another, as ``"allow -> block"`` counts."""
    return dict(Counter(f"{c.before.decision} -> {c.after.decision}" for c in found).most_common())
