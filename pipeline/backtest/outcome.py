"""What one replayed post was and what it ended as. Pure data, JSON both ways (the checkpoint files hold them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class HistoryPost:
    """One labelled post of the history: ``value`` is the record the classify stage reads (the post as JSON)."""

    id: str
    text: str
    label: str
    created_at: datetime | None
    value: bytes


@dataclass(frozen=True, slots=True)
class PostOutcome:
    """What the cascade did with one post.

    ``stage`` is the classify stage's outcome (allow / block / review / escalate, or ``dead`` for a dead letter),
    as the stream worker would have published it; ``decision`` / ``category`` / ``route`` are the final verdict's
    (after adjudication for an escalation). ``frontier_label`` is the label an adjudication produced (escalation or
    audit); ``frontier_calls`` counts the calls made for the post (escalation and audit)."""

    id: str
    label: str
    slm_top: str
    """The small model alone: its highest-scoring class."""
    stage: str
    stage_category: str | None
    decision: str
    category: str | None
    route: str
    cost_usd: float = 0.0
    """The final verdict's cost (the small model's share, or the frontier calls made for an escalation)."""
    audit_usd: float = 0.0
    frontier_label: str | None = None
    audited: bool = False
    frontier_calls: int = 0

    @property
    def escalated(self) -> bool:
        return self.stage == "escalate"

    @property
    def kept(self) -> bool:
        """Settled by the small model (a final verdict of route slm or cache)."""
        return self.route in ("slm", "cache")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> PostOutcome:
        return cls(**value)
