"""The pure core of the cascade: the small model's scores and a policy give an :class:`Outcome`.

No I/O, no clock, no validation beyond what the rules need: :func:`decide` runs once per post, so it walks
the policy's precomputed :attr:`Policy.rules` and builds nothing but the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pipeline.errors import DecisionError
from pipeline.policy.model import Policy

OutcomeKind = Literal["allow", "block", "review", "escalate"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with a post: a final decision, or ``escalate`` to the frontier model.

    ``category`` is the deciding category (the one that acted, or the in-band one that escalated);
    ``None`` when the post is allowed.
    """

    kind: OutcomeKind
    category: str | None = None

    @property
    def final(self) -> bool:
        return self.kind != "escalate"


ALLOW = Outcome("allow")


def decide(scores: Mapping[str, float], policy: Policy) -> Outcome:
    """Apply the policy's bands to one post's scores.

    For each taxonomy category with score ``p``: ``p < allow_below`` is clear; ``p >= block_at`` acts
    (the category's action, ``block`` or ``review``); anything else is in the band. Then:

    1. If any category acts, the outcome is the strongest action (``block`` beats ``review``); among
       equally strong ones the higher score wins, then the earlier category in ``taxonomy.categories``.
    2. Else, if any category is in its band, the outcome is ``escalate`` with the in-band category of
       highest score (ties: taxonomy order).
    3. Else ``allow`` with no category.

    ``allow_below == block_at`` leaves no band: the category is either clear or acts.

    ``scores`` must hold every taxonomy category and may hold the safe class (which the bands ignore);
    a missing or unknown category, or a score that is not a number in [0, 1] (NaN included), raises
    :class:`DecisionError` naming it.
    """
    act_category: str | None = None
    act_action: OutcomeKind = "allow"
    act_strength = 0
    act_score = -1.0
    band_category: str | None = None
    band_score = -1.0
    for category, allow_below, block_at, action, strength in policy.rules:
        try:
            p = scores[category]
        except KeyError:
            raise DecisionError(_missing(category, policy)) from None
        if not 0.0 <= p <= 1.0:  # also rejects NaN, for which every comparison is false
            raise DecisionError(_out_of_range(category, p))
        if p >= block_at:
            # Strict comparisons keep the earlier category on a tie: taxonomy order breaks it.
            if strength > act_strength or (strength == act_strength and p > act_score):
                act_category, act_action, act_strength, act_score = category, action, strength, p
        elif p >= allow_below and p > band_score:
            band_category, band_score = category, p

    safe = policy.taxonomy.safe
    has_safe = safe in scores
    if len(scores) != len(policy.rules) + has_safe:
        raise DecisionError(_unknown(scores, policy))
    if has_safe and not 0.0 <= scores[safe] <= 1.0:
        raise DecisionError(_out_of_range(safe, scores[safe]))

    if act_category is not None:
        return Outcome(act_action, act_category)
    if band_category is not None:
        return Outcome("escalate", band_category)
    return ALLOW


def best_guess(scores: Mapping[str, float], policy: Policy) -> Outcome:
    """The final decision the small model takes alone, for ``fallback: small_model``; never ``escalate``.

    A post that :func:`decide` settles keeps that decision. A post it would escalate gets its
    escalating category's action if that category's score beats (is strictly above) the safe class
    score, else ``allow``. So the fallback only resolves the band; it never overrules a clear or an
    acting category. The scores must then hold the safe class (:class:`DecisionError` otherwise).
    """
    outcome = decide(scores, policy)
    if outcome.final:
        return outcome
    category = outcome.category
    assert category is not None  # decide always names the category it escalates for
    safe = policy.taxonomy.safe
    if safe not in scores:
        raise DecisionError(f"scores have no '{safe}' (the safe class): the fallback compares the escalating "
                            "category's score with it, so the model must emit it")
    if scores[category] > scores[safe]:
        return Outcome(policy.categories[category].action, category)
    return ALLOW


def _missing(category: str, policy: Policy) -> str:
    return (f"scores have no '{category}': the model must emit every taxonomy category "
            f"({', '.join(policy.taxonomy.categories)}); check that model and policy match")


def _out_of_range(category: str, value: object) -> str:
    return f"score for '{category}' is {value!r}: scores must be probabilities in [0, 1]"


def _unknown(scores: Mapping[str, float], policy: Policy) -> str:
    known = {*policy.taxonomy.categories, policy.taxonomy.safe}
    unknown = ", ".join(repr(k) for k in scores if k not in known)
    return (f"scores name categories the policy does not know ({unknown}): the taxonomy must list every class "
            "the model emits; check that model and policy match")
