"""decide(scores, policy): clear below allow_below, act at block_at, escalate in between.

The test policy has three categories in this taxonomy order:

    spam       allow_below 0.3  block_at 0.9  block
    hate       allow_below 0.2  block_at 0.8  block
    self_harm  allow_below 0.1  block_at 0.5  review
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from pipeline.errors import DecisionError
from pipeline.policy import ALLOW, Outcome, Policy, best_guess, decide

DEFAULT = yaml.safe_load((Path(__file__).resolve().parents[2] / "policies" / "default.yaml").read_text("utf-8"))
BANDS = {"spam": (0.3, 0.9, "block"), "hate": (0.2, 0.8, "block"), "self_harm": (0.1, 0.5, "review")}


def make_policy(bands: Mapping[str, tuple[float, float, str]] = BANDS) -> Policy:
    """The default policy with ``bands`` (category -> allow_below, block_at, action) as its taxonomy."""
    data = {
        **DEFAULT,
        "taxonomy": {"safe": "safe", "categories": list(bands)},
        "categories": {
            name: {"allow_below": low, "block_at": high, "action": action}
            for name, (low, high, action) in bands.items()
        },
    }
    return Policy.model_validate(data)


POLICY = make_policy()


def scores(**given: float) -> dict[str, float]:
    """Every category at 0 unless given; the safe class only when given."""
    return {"spam": 0.0, "hate": 0.0, "self_harm": 0.0, **given}


def below(x: float) -> float:
    return math.nextafter(x, -math.inf)


def above(x: float) -> float:
    return math.nextafter(x, math.inf)


# -- one category: the band edges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spam", "expected"),
    [
        (0.0, ALLOW),
        (below(0.3), ALLOW),
        (0.3, Outcome("escalate", "spam")),  # p == allow_below is in the band
        (above(0.3), Outcome("escalate", "spam")),
        (below(0.9), Outcome("escalate", "spam")),
        (0.9, Outcome("block", "spam")),  # p == block_at acts
        (above(0.9), Outcome("block", "spam")),
        (1.0, Outcome("block", "spam")),
    ],
)
def test_a_score_is_clear_below_allow_below_in_band_up_to_block_at_and_acts_from_block_at(
    spam: float, expected: Outcome
) -> None:
    assert decide(scores(spam=spam), POLICY) == expected


@pytest.mark.parametrize(
    ("self_harm", "expected"),
    [(below(0.1), ALLOW), (0.1, Outcome("escalate", "self_harm")), (0.5, Outcome("review", "self_harm"))],
)
def test_the_action_is_the_categorys_own(self_harm: float, expected: Outcome) -> None:
    assert decide(scores(self_harm=self_harm), POLICY) == expected


@pytest.mark.parametrize(
    ("threshold", "score", "expected"),
    [
        (0.5, below(0.5), ALLOW),
        (0.5, 0.5, Outcome("block", "spam")),
        (0.0, 0.0, Outcome("block", "spam")),  # a threshold of 0 acts on every post
        (1.0, below(1.0), ALLOW),
        (1.0, 1.0, Outcome("block", "spam")),
    ],
)
def test_allow_below_equal_to_block_at_leaves_no_band(threshold: float, score: float, expected: Outcome) -> None:
    policy = make_policy({"spam": (threshold, threshold, "block")})
    assert decide({"spam": score}, policy) == expected


# -- several categories ---------------------------------------------------------------------------------------------


def test_block_beats_review_even_with_a_lower_score() -> None:
    assert decide(scores(spam=0.91, self_harm=0.99), POLICY) == Outcome("block", "spam")


def test_among_equal_actions_the_higher_score_wins() -> None:
    assert decide(scores(spam=0.91, hate=0.95), POLICY) == Outcome("block", "hate")
    assert decide(scores(spam=0.97, hate=0.95), POLICY) == Outcome("block", "spam")


def test_among_equal_actions_and_scores_taxonomy_order_wins() -> None:
    assert decide(scores(spam=0.95, hate=0.95), POLICY) == Outcome("block", "spam")
    reversed_policy = make_policy(dict(reversed(BANDS.items())))
    assert decide(scores(spam=0.95, hate=0.95), reversed_policy) == Outcome("block", "hate")


def test_an_acting_category_beats_an_escalating_one() -> None:
    assert decide(scores(spam=0.89, self_harm=0.5), POLICY) == Outcome("review", "self_harm")


def test_escalation_names_the_in_band_category_with_the_highest_score() -> None:
    assert decide(scores(spam=0.5, hate=0.6), POLICY) == Outcome("escalate", "hate")
    # hate (0.25) is in its band; spam (0.29) scores higher but is clear: it cannot be the reason.
    assert decide(scores(spam=0.29, hate=0.25), POLICY) == Outcome("escalate", "hate")


def test_escalation_ties_go_to_taxonomy_order() -> None:
    assert decide(scores(spam=0.4, hate=0.4, self_harm=0.4), POLICY) == Outcome("escalate", "spam")


def test_the_safe_class_is_ignored_by_the_bands() -> None:
    assert decide(scores(safe=1.0, spam=0.95), POLICY) == Outcome("block", "spam")
    assert decide(scores(safe=0.0), POLICY) == ALLOW


def test_only_escalate_is_not_final() -> None:
    assert [Outcome(kind).final for kind in ("allow", "block", "review", "escalate")] == [True, True, True, False]


# -- scores that do not fit the taxonomy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"spam": 0.1, "self_harm": 0.1}, r"scores have no 'hate': the model must emit every taxonomy category"),
        (scores(hate=math.nan), r"score for 'hate' is nan: scores must be probabilities in \[0, 1\]"),
        (scores(hate=1.5), r"score for 'hate' is 1.5"),
        (scores(hate=above(1.0)), r"score for 'hate'"),
        (scores(hate=-0.0001), r"score for 'hate'"),
        (scores(hate=math.inf), r"score for 'hate' is inf"),
        (scores(safe=math.nan), r"score for 'safe' is nan"),
        (scores(scam=0.1), r"scores name categories the policy does not know \('scam'\)"),
    ],
)
def test_scores_that_do_not_fit_the_policy_raise_decision_error_naming_the_category(
    bad: dict[str, float], match: str
) -> None:
    with pytest.raises(DecisionError, match=match):
        decide(bad, POLICY)


# -- best_guess: the fallback without the frontier ------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (scores(safe=0.1, spam=0.25), ALLOW),  # clear stays allowed, even above the safe score
        (scores(safe=0.99, spam=0.95), Outcome("block", "spam")),  # acting stays acting
        (scores(safe=0.3, spam=0.6), Outcome("block", "spam")),  # in band, beats safe: the category's action
        (scores(safe=0.3, self_harm=0.4), Outcome("review", "self_harm")),
        (scores(safe=0.6, spam=0.6), ALLOW),  # a tie does not beat safe
        (scores(safe=0.7, spam=0.6), ALLOW),
        (scores(safe=0.35, spam=0.4, hate=0.5), Outcome("block", "hate")),  # the escalating category decides
    ],
)
def test_best_guess_settles_the_band_against_the_safe_class(given: dict[str, float], expected: Outcome) -> None:
    assert best_guess(given, POLICY) == expected


def test_best_guess_needs_the_safe_class_only_to_settle_a_band() -> None:
    assert best_guess(scores(spam=0.95), POLICY) == Outcome("block", "spam")
    with pytest.raises(DecisionError, match=r"scores have no 'safe' \(the safe class\)"):
        best_guess(scores(spam=0.5), POLICY)


# -- against a straightforward reading of the rules --------------------------------------------------------------


def reference(given: Mapping[str, float], policy: Policy) -> Outcome:
    """The rules of decide's docstring, written as plainly as possible (sorting instead of one pass)."""
    order = policy.taxonomy.categories
    acting = [name for name in order if given[name] >= policy.categories[name].block_at]
    if acting:
        strength = {"block": 2, "review": 1}
        name = min(
            acting,
            key=lambda n: (-strength[policy.categories[n].action], -given[n], order.index(n)),
        )
        action = policy.categories[name].action
        return Outcome(action, name)
    in_band = [name for name in order if given[name] >= policy.categories[name].allow_below]
    if in_band:
        return Outcome("escalate", min(in_band, key=lambda n: (-given[n], order.index(n))))
    return ALLOW


def test_decide_agrees_with_the_plain_reading_on_many_random_posts() -> None:
    rng = random.Random(20261124)
    edges = [0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 0.9, 1.0, below(0.3), below(0.9), above(0.2), 0.4, 0.95]
    no_band = make_policy({**BANDS, "spam": (0.5, 0.5, "review")})
    policies = [POLICY, make_policy(dict(reversed(BANDS.items()))), no_band]
    seen: set[str] = set()
    for _ in range(5000):
        policy = rng.choice(policies)
        # Edge values make ties and exact thresholds common; uniform draws cover the rest.
        given = {name: rng.choice(edges) if rng.random() < 0.6 else rng.random() for name in policy.categories}
        outcome = decide(given, policy)
        assert outcome == reference(given, policy), given
        seen.add(outcome.kind)
    assert seen == {"allow", "block", "review", "escalate"}
