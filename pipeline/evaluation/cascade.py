"""The cascade view: what a policy's bands would do with a model's scores, and what that costs. Pure.

Every row goes through the real :func:`pipeline.policy.decide`, so the view matches the stream post for post.
A final decision counts as correct when it names the true class: ``allow`` for a row labelled with the safe
class, ``block`` / ``review`` for a row labelled with the acting category. Escalated rows are the frontier's
to settle and are not scored.

Cost per 1,000 posts, with the policy's prices (no score cache, no prompt caching, so an upper bound):

    cascade      = small_model_usd_per_1k_posts + escalation_rate * 1000 * est_frontier_usd_per_post
    all-frontier = 1000 * est_frontier_usd_per_post
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.backends.base import LabelMap
from pipeline.policy import Outcome, OutcomeKind, Policy, Prices, decide

OUTCOME_KINDS: tuple[OutcomeKind, ...] = ("allow", "block", "review", "escalate")


@dataclass(frozen=True, slots=True)
class CostPer1k:
    """Estimated USD per 1,000 posts: the cascade against sending every post to the frontier model."""

    cascade_usd: float
    all_frontier_usd: float

    @property
    def saving(self) -> float | None:
        """Share of the all-frontier cost the cascade saves; ``None`` when the frontier is free."""
        return 1.0 - self.cascade_usd / self.all_frontier_usd if self.all_frontier_usd else None


@dataclass(frozen=True, slots=True)
class CascadeView:
    """Counts of what the policy did with the rows, and the derived rates. ``outcomes`` has every outcome kind."""

    policy_name: str
    policy_version: str
    posts: int
    outcomes: Mapping[str, int]
    escalations_by_category: Mapping[str, int]
    kept_correct: int
    acted_correct: int
    harmful: int
    harmful_allowed: int
    cost: CostPer1k

    @property
    def escalated(self) -> int:
        return self.outcomes["escalate"]

    @property
    def kept(self) -> int:
        """Rows the small model settled on its own (allowed, blocked or sent to review)."""
        return self.posts - self.escalated

    @property
    def escalation_rate(self) -> float:
        return self.escalated / self.posts if self.posts else 0.0

    @property
    def kept_accuracy(self) -> float | None:
        """Share of the kept rows whose decision names the true class; ``None`` when nothing was kept."""
        return self.kept_correct / self.kept if self.kept else None

    @property
    def acted(self) -> int:
        return self.outcomes["block"] + self.outcomes["review"]

    @property
    def action_precision(self) -> float | None:
        """Share of the blocked / reviewed rows whose acting category is the true label."""
        return self.acted_correct / self.acted if self.acted else None

    @property
    def missed_harm_rate(self) -> float | None:
        """Share of the rows with a harmful label that the small model allowed outright."""
        return self.harmful_allowed / self.harmful if self.harmful else None

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": {"name": self.policy_name, "version": self.policy_version},
            "posts": self.posts,
            "outcomes": dict(self.outcomes),
            "escalation_rate": self.escalation_rate,
            "escalations_by_category": dict(self.escalations_by_category),
            "kept": self.kept,
            "kept_accuracy": self.kept_accuracy,
            "action_precision": self.action_precision,
            "missed_harm_rate": self.missed_harm_rate,
            "cost_per_1k_posts": {"cascade_usd": self.cost.cascade_usd,
                                  "all_frontier_usd": self.cost.all_frontier_usd, "saving": self.cost.saving},
        }


def decide_all(probs: NDArray[Any], labels: Sequence[str], policy: Policy) -> list[Outcome]:
    """:func:`decide` for every row of ``probs`` (columns in ``labels`` order); the labels must be the policy's
    taxonomy (:class:`~pipeline.errors.ModelMismatchError` otherwise)."""
    LabelMap.for_policy(labels, policy)
    return [decide(dict(zip(labels, row, strict=True)), policy) for row in np.asarray(probs, dtype=float).tolist()]


def cascade_view(probs: NDArray[Any], y_true: NDArray[Any], labels: Sequence[str], policy: Policy) -> CascadeView:
    """Run the policy over every row and count what it did against the true labels ``labels[y_true[i]]``."""
    outcomes = decide_all(probs, labels, policy)
    truth = [labels[i] for i in np.asarray(y_true).tolist()]
    safe = policy.taxonomy.safe
    kinds = Counter(o.kind for o in outcomes)
    escalations = Counter(o.category for o in outcomes if o.kind == "escalate")
    kept_correct = acted_correct = harmful = harmful_allowed = 0
    for outcome, label in zip(outcomes, truth, strict=True):
        harmful += label != safe
        if outcome.kind == "allow":
            kept_correct += label == safe
            harmful_allowed += label != safe
        elif outcome.kind != "escalate":
            kept_correct += label == outcome.category
            acted_correct += label == outcome.category
    return CascadeView(
        policy_name=policy.name, policy_version=policy.version, posts=len(outcomes),
        outcomes={kind: kinds[kind] for kind in OUTCOME_KINDS},
        escalations_by_category={c: escalations[c] for c in policy.taxonomy.categories},
        kept_correct=kept_correct, acted_correct=acted_correct, harmful=harmful, harmful_allowed=harmful_allowed,
        cost=cost_per_1k(kinds["escalate"] / len(outcomes) if outcomes else 0.0, policy.prices),
    )


def cost_per_1k(escalation_rate: float, prices: Prices) -> CostPer1k:
    """The module docstring's cost model for one escalation rate."""
    frontier_1k = 1000 * prices.est_frontier_usd_per_post
    return CostPer1k(cascade_usd=prices.small_model_usd_per_1k_posts + escalation_rate * frontier_1k,
                     all_frontier_usd=frontier_1k)
