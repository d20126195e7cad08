"""A reviewer's decision: validated against the policy, compared with the post's current outcome, and turned
into the records the console publishes. Pure: the store calls this inside the decision's transaction.

What a decision publishes (only a publishing decision: the first one on an item):

* always a :class:`~pipeline.records.Label` (source ``human``) with the chosen category, tied to the verdict the
  reviewer looked at (``verdict_id``), so the retraining dataset gains a trusted label;
* when the outcome (decision and deciding category) differs from the post's current final verdict, a new final
  :class:`~pipeline.records.Verdict` with route ``human`` whose ``supersedes`` names that verdict. Its id is
  derived from the post id and the decision's id, so re-publishing the same decision repeats it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pipeline.records import Decision, Label, Verdict, human_verdict_id

DECISIONS: tuple[Decision, ...] = ("allow", "block", "review")
DECISION_KEYS: dict[Decision, str] = {"allow": "a", "block": "b", "review": "r"}


class ChoiceError(ValueError):
    """A reviewer's form does not name a valid decision; the message says what to pick."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happens to a post: the decision and the deciding category (None when allowed)."""

    decision: Decision
    category: str | None

    @classmethod
    def of(cls, verdict: Verdict) -> Outcome:
        return cls(verdict.decision, verdict.category if verdict.decision != "allow" else None)

    def describe(self) -> str:
        return self.decision if self.category is None else f"{self.decision} ({self.category})"


@dataclass(frozen=True, slots=True)
class Choice:
    """What the reviewer picked: a decision and the label (a category of the taxonomy, the safe class included)."""

    decision: Decision
    label: str
    safe: str

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.decision, None if self.decision == "allow" or self.label == self.safe else self.label)


def parse_choice(decision: str | None, label: str | None, *, safe: str, categories: tuple[str, ...]) -> Choice:
    """Validate a submitted form. Blocking or sending to review needs a harmful category; allowing takes any."""
    picked = next((d for d in DECISIONS if d == decision), None)
    if picked is None:
        raise ChoiceError("pick a decision: allow (a), block (b) or review (r)")
    if label not in (safe, *categories):
        raise ChoiceError("pick a category (number keys) from the policy's taxonomy")
    if picked != "allow" and label == safe:
        raise ChoiceError(f"{picked} needs a harmful category, not '{safe}'")
    return Choice(picked, label, safe)


@dataclass(frozen=True, slots=True)
class Published:
    """The records a decision publishes (the verdict only when the outcome changes)."""

    label: Label
    verdict: Verdict | None


def changes_outcome(current: Verdict, choice: Choice) -> bool:
    return Outcome.of(current) != choice.outcome


def records_for(
    *,
    current: Verdict,
    choice: Choice,
    text: str,
    decision_id: str,
    decided_at: datetime,
) -> Published:
    """The Label and, where the outcome changes, the superseding Verdict of a decision on ``current`` (the post's
    current final verdict)."""
    label = Label(
        post_id=current.post_id, text=text, label=choice.label, source="human", confidence=1.0,
        model_scores=current.scores, model_version=current.model_version, policy_version=current.policy_version,
        labelled_at=decided_at, verdict_id=current.verdict_id,
    )
    if not changes_outcome(current, choice):
        return Published(label, None)
    outcome = choice.outcome
    verdict = Verdict(
        verdict_id=human_verdict_id(current.post_id, decision_id), post_id=current.post_id,
        decision=outcome.decision, category=outcome.category, scores=current.scores, route="human", final=True,
        model=current.model, model_version=current.model_version, policy=current.policy,
        policy_version=current.policy_version,
        latency_ms=max(0.0, (decided_at - current.decided_at).total_seconds() * 1000.0), cost_usd=0.0,
        flags=("human_review",), supersedes=current.verdict_id, decided_at=decided_at,
    )
    return Published(label, verdict)
