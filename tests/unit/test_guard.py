"""The action guard's pure core: guard_outcome (what a tripped guard does to a decision), the GuardBoard of guards
in force, the trips the monitor publishes, the clearing records, and the ``guard:`` policy section.

The test policy has three categories in this taxonomy order (as in test_decide):

    spam       allow_below 0.3  block_at 0.9  block
    hate       allow_below 0.2  block_at 0.8  block
    self_harm  allow_below 0.1  block_at 0.5  review
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from pipeline.adjudication.outcomes import fallback_verdict
from pipeline.errors import PolicyError
from pipeline.policy import ALLOW, GuardBoard, Outcome, Policy, clearing, decide, guard_outcome, parse_policy, trips
from pipeline.records import AdjudicationRequest, Alert, GuardState, Post, alert_id

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TEXT = (REPO / "policies" / "default.yaml").read_text("utf-8")
DEFAULT = yaml.safe_load(DEFAULT_TEXT)
BANDS = {"spam": (0.3, 0.9, "block"), "hate": (0.2, 0.8, "block"), "self_harm": (0.1, 0.5, "review")}
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def make_policy(bands: Mapping[str, tuple[float, float, str]] = BANDS, **guard: Any) -> Policy:
    data = {
        **DEFAULT,
        "taxonomy": {"safe": "safe", "categories": list(bands)},
        "categories": {name: {"allow_below": low, "block_at": high, "action": action}
                       for name, (low, high, action) in bands.items()},
        "guard": guard,
    }
    return Policy.model_validate(data)


TO_ADJUDICATION = make_policy(divert="adjudication")
TO_REVIEW = make_policy(divert="review")


def scores(**given: float) -> dict[str, float]:
    return {"spam": 0.0, "hate": 0.0, "self_harm": 0.0, **given}


# -- guard_outcome: the cases one by one ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "tripped", "policy", "expected"),
    [
        # No guard tripped, or another category's: nothing changes.
        (scores(spam=0.95), set(), TO_ADJUDICATION, (Outcome("block", "spam"), None)),
        (scores(spam=0.95), {"hate"}, TO_ADJUDICATION, (Outcome("block", "spam"), None)),
        # The guarded category's block goes to the frontier, or to review.
        (scores(spam=0.95), {"spam"}, TO_ADJUDICATION, (Outcome("escalate", "spam"), "spam")),
        (scores(spam=0.95), {"spam"}, TO_REVIEW, (Outcome("review", "spam"), "spam")),
        (scores(spam=0.9), {"spam"}, TO_ADJUDICATION, (Outcome("escalate", "spam"), "spam")),  # exactly block_at
        # Another, unguarded category blocks the post too: it is blocked for that one, with no guard mark.
        (scores(spam=0.95, hate=0.85), {"spam"}, TO_ADJUDICATION, (Outcome("block", "hate"), None)),
        (scores(spam=0.95, hate=0.8), {"spam"}, TO_REVIEW, (Outcome("block", "hate"), None)),
        # ... but not when that one is guarded as well.
        (scores(spam=0.95, hate=0.85), {"spam", "hate"}, TO_ADJUDICATION, (Outcome("escalate", "spam"), "spam")),
        (scores(spam=0.85, hate=0.95), {"spam", "hate"}, TO_REVIEW, (Outcome("review", "hate"), "hate")),
        # An unguarded category merely in its band or reviewing does not keep the block.
        (scores(spam=0.95, hate=0.5), {"spam"}, TO_ADJUDICATION, (Outcome("escalate", "spam"), "spam")),
        (scores(spam=0.95, self_harm=0.7), {"spam"}, TO_ADJUDICATION, (Outcome("escalate", "spam"), "spam")),
        (scores(spam=0.95, self_harm=0.7), {"spam"}, TO_REVIEW, (Outcome("review", "spam"), "spam")),
        # Outcomes that are not blocks are never touched, guarded or not.
        (scores(self_harm=0.7), {"self_harm"}, TO_ADJUDICATION, (Outcome("review", "self_harm"), None)),
        (scores(spam=0.5), {"spam"}, TO_REVIEW, (Outcome("escalate", "spam"), None)),
        (scores(), {"spam", "hate", "self_harm"}, TO_REVIEW, (ALLOW, None)),
        # A policy with the guard switched off ignores tripped guards.
        (scores(spam=0.95), {"spam"}, make_policy(enabled=False), (Outcome("block", "spam"), None)),
    ],
)
def test_guard_outcome(given: dict[str, float], tripped: set[str], policy: Policy,
                       expected: tuple[Outcome, str | None]) -> None:
    assert guard_outcome(decide(given, policy), given, policy, frozenset(tripped)) == expected


# -- guard_outcome against a plain reading, on every combination ------------------------------------------------


def plain(given: Mapping[str, float], policy: Policy, tripped: AbstractSet[str]) -> tuple[Outcome, str | None]:
    """guard_outcome's docstring, written as plainly as possible."""
    original = decide(given, policy)
    if original.kind != "block" or original.category not in tripped or not policy.guard.enabled:
        return original, None
    order = policy.taxonomy.categories
    others = [n for n in order if n not in tripped and policy.categories[n].action == "block"
              and given[n] >= policy.categories[n].block_at]
    if others:
        return Outcome("block", min(others, key=lambda n: (-given[n], order.index(n)))), None
    return Outcome("escalate" if policy.guard.divert == "adjudication" else "review", original.category), \
        original.category


def as_reviews(policy: Policy, tripped: AbstractSet[str]) -> Policy:
    """``policy`` with the tripped categories acting by review instead of block."""
    bands = {n: (b.allow_below, b.block_at, "review" if n in tripped else b.action)
             for n, b in policy.categories.items()}
    return make_policy(bands, **policy.guard.model_dump())


EDGES = (0.0, 0.25, 0.3, 0.5, 0.79, 0.8, 0.85, 0.9, 0.95, 1.0)
SUBSETS = [frozenset(c) for r in range(4) for c in itertools.combinations(BANDS, r)]


@pytest.mark.parametrize("policy", [TO_ADJUDICATION, TO_REVIEW, make_policy(dict(reversed(BANDS.items())))],
                         ids=["adjudication", "review", "reversed"])
def test_guard_outcome_on_every_combination_of_edge_scores_and_tripped_guards(policy: Policy) -> None:
    diverted = 0
    for values in itertools.product(EDGES, repeat=len(BANDS)):
        given = dict(zip(BANDS, values, strict=True))
        original = decide(given, policy)
        for tripped in SUBSETS:
            outcome, guard = guard_outcome(original, given, policy, tripped)
            assert (outcome, guard) == plain(given, policy, tripped), (given, tripped)
            # The properties the guard promises, whatever the scores:
            assert not (outcome.kind == "block" and outcome.category in tripped), "a guarded category blocked"
            if original.kind != "block":
                assert (outcome, guard) == (original, None), "a decision other than block changed"
            if outcome.kind == "block":
                assert guard is None and outcome == decide(given, as_reviews(policy, tripped))
            if guard is not None:
                diverted += 1
                assert guard == original.category and outcome.category == guard
                assert outcome.kind == ("escalate" if policy.guard.divert == "adjudication" else "review")
            if not tripped:
                assert (outcome, guard) == (original, None)
    assert diverted > 100


def test_guard_outcome_agrees_with_the_plain_reading_on_random_posts() -> None:
    rng = random.Random(18)
    for _ in range(3000):
        policy = rng.choice([TO_ADJUDICATION, TO_REVIEW])
        given = {n: rng.random() for n in BANDS}
        tripped = rng.choice(SUBSETS)
        assert guard_outcome(decide(given, policy), given, policy, tripped) == plain(given, policy, tripped)


# -- GuardBoard ----------------------------------------------------------------------------------------------------


def state(category: str = "spam", *, tripped: bool = True, policy: str = "default", at: datetime = NOW,
          expires_at: datetime | None = None) -> GuardState:
    return GuardState(policy=policy, category=category, tripped=tripped, by="monitor" if tripped else "operator",
                      expires_at=expires_at, changed_at=at)


def test_the_board_keeps_the_latest_state_per_policy_and_category() -> None:
    board = GuardBoard()
    assert board.tripped("default", NOW) == frozenset()
    board.apply(state("spam"))
    board.apply(state("hate"))
    board.apply(state("spam", policy="strict"))
    assert board.tripped("default", NOW) == {"spam", "hate"}
    assert board.tripped("strict", NOW) == {"spam"}
    board.apply(state("spam", tripped=False, at=NOW + timedelta(minutes=1)))
    assert board.tripped("default", NOW) == {"hate"}
    board.apply(state("spam", at=NOW + timedelta(minutes=2)))  # tripped again
    assert board.tripped("default", NOW) == {"spam", "hate"}
    board.remove("default/hate")  # a tombstone
    assert board.tripped("default", NOW) == {"spam"}
    assert [s.key for s in board.states()] == ["default/spam", "strict/spam"]
    assert len(board) == 2


def test_a_guard_with_a_reset_time_is_in_force_until_then() -> None:
    board = GuardBoard()
    board.apply(state("spam", expires_at=NOW + timedelta(seconds=60)))
    assert board.tripped("default", NOW + timedelta(seconds=59)) == {"spam"}
    assert board.tripped("default", NOW + timedelta(seconds=60)) == frozenset()
    assert not state(tripped=False).in_force(NOW)


# -- trips and clearing --------------------------------------------------------------------------------------------


def alert(kind: str, category: str | None, policy: str = "default") -> Alert:
    start = NOW - timedelta(minutes=5)
    return Alert(alert_id=alert_id(policy, kind, category, start), kind=kind, policy=policy,  # type: ignore[arg-type]
                 category=category, window_start=start, window_end=NOW, value=0.6, reference=0.05, threshold=0.15,
                 count=300, message=f"{category}: 300 of 500 posts blocked")


def test_only_block_rate_alerts_trip_guards() -> None:
    alerts = [alert("block_rate", "spam"), alert("drift", "spam"), alert("escalation_rate", None),
              alert("block_rate", "hate", policy="strict")]
    states = trips(alerts, TO_ADJUDICATION, NOW)
    assert [(s.key, s.tripped, s.by, s.expires_at) for s in states] == [
        ("default/spam", True, "monitor", None), ("strict/hate", True, "monitor", None)]
    first = states[0]
    assert (first.alert_id, first.block_rate, first.reference, first.window_start, first.changed_at) == (
        alerts[0].alert_id, 0.6, 0.05, alerts[0].window_start, NOW)
    assert first.reason == alerts[0].message


def test_a_policy_reset_time_makes_the_trip_expire_and_a_disabled_guard_trips_nothing() -> None:
    [tripped] = trips([alert("block_rate", "spam")], make_policy(reset_after_s=600), NOW)
    assert tripped.expires_at == NOW + timedelta(seconds=600)
    assert trips([alert("block_rate", "spam")], make_policy(enabled=False), NOW) == []


def test_clearing_publishes_a_cleared_state_for_each_matching_guard_in_force() -> None:
    states = [state("spam"), state("hate"), state("spam", policy="strict"),
              state("violence", expires_at=NOW - timedelta(seconds=1)),  # expired: nothing to clear
              state("sexual"), state("sexual", tripped=False)]  # cleared already (the latest state wins)
    everything = clearing(states, NOW)
    assert [(s.key, s.tripped, s.by) for s in everything] == [
        ("default/hate", False, "operator"), ("default/spam", False, "operator"), ("strict/spam", False, "operator")]
    assert [s.key for s in clearing(states, NOW, policy="default")] == ["default/hate", "default/spam"]
    assert [s.key for s in clearing(states, NOW, category="spam")] == ["default/spam", "strict/spam"]
    [one] = clearing(states, NOW, policy="strict", category="spam", note="model rolled back")
    assert (one.reason, one.changed_at) == ("model rolled back", NOW)
    assert clearing(states, NOW, category="self_harm") == []


# -- the fallback under a guard --------------------------------------------------------------------------------------


def request(given: dict[str, float], guard: str | None) -> AdjudicationRequest:
    return AdjudicationRequest(post=Post(id="p1", text="a post"), scores=given, candidate_category="spam",
                               model="m", model_version="1", policy="default", policy_version="v", guard=guard,
                               ingested_at=NOW, enqueued_at=NOW)


def test_the_small_model_fallback_never_blocks_a_guarded_category() -> None:
    given = {**scores(spam=0.95), "safe": 0.05}
    unguarded = fallback_verdict(request(given, None), TO_ADJUDICATION, reason="over_budget", spent=0.0, now=NOW)
    assert (unguarded.decision, unguarded.category, unguarded.guard) == ("block", "spam", None)
    guarded = fallback_verdict(request(given, "spam"), TO_ADJUDICATION, reason="over_budget", spent=0.0, now=NOW)
    assert (guarded.decision, guarded.category, guarded.guard, guarded.route) == ("review", "spam", "spam", "fallback")
    for_review = fallback_verdict(request(given, "spam"), TO_REVIEW, reason="over_budget", spent=0.0, now=NOW)
    assert (for_review.decision, for_review.category) == ("review", "spam")
    both = {**scores(spam=0.95, hate=0.85), "safe": 0.0}  # hate is not guarded: it still blocks
    other = fallback_verdict(request(both, "spam"), TO_ADJUDICATION, reason="over_budget", spent=0.0, now=NOW)
    assert (other.decision, other.category, other.guard) == ("block", "hate", "spam")


# -- the guard: section of a policy ------------------------------------------------------------------------------


def with_guard(section: str) -> str:
    head, rest = DEFAULT_TEXT.split("\nguard:", 1)
    return head + "\nguard:\n" + section + "\n" + rest.split("\n\n", 1)[1]


def test_the_default_policy_guards_by_adjudication_until_an_operator_clears() -> None:
    policy = parse_policy(DEFAULT_TEXT)
    assert (policy.guard.enabled, policy.guard.divert, policy.guard.reset_after_s) == (True, "adjudication", None)
    assert parse_policy(with_guard("  divert: review\n  reset_after_s: 900")).guard.reset_after_s == 900


@pytest.mark.parametrize(("section", "message"), [
    ("  divert: drop", "guard.divert"),
    ("  reset_after_s: 0", "guard.reset_after_s"),
    ("  enabled: maybe", "guard.enabled"),
    ("  trip_factor: 3", "guard.trip_factor"),
])
def test_an_invalid_guard_section_is_rejected_naming_the_field(section: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace(".", r"\.")):
        parse_policy(with_guard(section))


def test_a_guard_state_needs_its_policy_and_category() -> None:
    with pytest.raises(ValidationError):
        GuardState(policy="", category="spam", tripped=True, by="monitor")
    with pytest.raises(ValidationError):
        GuardState.model_validate({"policy": "default", "category": "spam", "tripped": True, "by": "someone"})
