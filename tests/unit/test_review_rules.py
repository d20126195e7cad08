"""The review console's pure rules: queues, the seeded QA sample, claims, which verdict is current, decisions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.records import Label
from pipeline.review import rules
from pipeline.review.decision import ChoiceError, Outcome, parse_choice, records_for
from pipeline.review.rules import Claim, qa_sampled, queue_of_label, queue_of_verdict, replaces
from tests.support.review import T0, audit_label, verdict

pytestmark = pytest.mark.unit

SAFE, CATEGORIES = "safe", ("harassment", "spam")


@pytest.mark.parametrize(("decision", "route", "final", "expected"), [
    ("review", "slm", True, "review"),
    ("review", "frontier", True, "review"),
    ("block", "fallback", True, "fallback"),
    ("review", "fallback", True, "review"),
    ("allow", "slm", True, None),
    ("block", "cache", True, None),
    ("review", "slm", False, None),
])
def test_verdicts_go_to_at_most_one_queue(decision: str, route: str, final: bool, expected: str | None) -> None:
    v = verdict("p", decision=decision, category=None if decision == "allow" else "spam", route=route, final=final)
    assert queue_of_verdict(v, qa_rate=0.0, qa_seed=0) == expected


def test_human_verdicts_never_queue_again() -> None:
    v = verdict("p", decision="review", category="spam", route="human", supersedes="x")
    assert queue_of_verdict(v, qa_rate=1.0, qa_seed=0) is None


def test_frontier_verdicts_are_sampled_for_qa_at_the_rate_and_reproducibly() -> None:
    ids = [f"verdict-{i}" for i in range(20_000)]
    picked = [i for i in ids if qa_sampled(i, 0.05, seed=7)]
    assert 0.045 * len(ids) < len(picked) < 0.055 * len(ids)  # 5 % ± 10 % relative (~7 sigma)
    assert picked == [i for i in ids if qa_sampled(i, 0.05, seed=7)]
    assert picked != [i for i in ids if qa_sampled(i, 0.05, seed=8)]
    assert not any(qa_sampled(i, 0.0, seed=7) for i in ids[:100])
    assert all(qa_sampled(i, 1.0, seed=7) for i in ids[:100])
    sampled = next(i for i in ids if qa_sampled(i, 0.05, seed=7))
    v = verdict("p", decision="block", category="spam", route="frontier").model_copy(update={"verdict_id": sampled})
    assert queue_of_verdict(v, qa_rate=0.05, qa_seed=7) == "qa"


def test_only_disagreeing_audit_labels_are_queued() -> None:
    assert queue_of_label(audit_label("p", "spam", audited="v")) == "audit"
    agreeing = audit_label("p", "spam", audited="v").model_copy(update={"agrees": True})
    assert queue_of_label(agreeing) is None
    assert queue_of_label(Label(post_id="p", text="t", label="spam", source="frontier")) is None


def test_a_claim_is_live_until_it_expires_and_can_then_be_taken_over() -> None:
    claim = Claim("alice", T0 + timedelta(minutes=15))
    assert claim.holder(T0) == "alice"
    assert claim.may_take("alice", T0)
    assert not claim.may_take("bob", T0)
    later = T0 + timedelta(minutes=15)
    assert claim.holder(later) is None
    assert claim.may_take("bob", later)
    assert Claim(None, None).may_take("bob", T0)
    assert rules.claim_expiry(T0, 60) == T0 + timedelta(seconds=60)


def test_the_later_verdict_is_current_but_a_superseded_one_never_returns() -> None:
    slm = verdict("p", decision="review", category="spam", at=T0)
    human = verdict("p", decision="block", category="spam", route="human", supersedes=slm.verdict_id,
                    at=T0 + timedelta(minutes=5)).model_copy(update={"verdict_id": "h1"})
    assert replaces(None, slm)
    assert not replaces(slm, slm)
    assert replaces(slm, human)
    assert not replaces(human, slm)
    early_human = human.model_copy(update={"decided_at": T0 - timedelta(minutes=1)})
    assert replaces(slm, early_human)  # it names slm: it wins whatever the clocks say
    newer_policy = verdict("p", decision="allow", at=T0 + timedelta(hours=1), policy_version="pv2")
    assert replaces(human, newer_policy)


def test_choices_are_checked_against_the_taxonomy() -> None:
    assert parse_choice("block", "spam", safe=SAFE, categories=CATEGORIES).outcome == Outcome("block", "spam")
    assert parse_choice("allow", "spam", safe=SAFE, categories=CATEGORIES).outcome == Outcome("allow", None)
    assert parse_choice("allow", "safe", safe=SAFE, categories=CATEGORIES).outcome == Outcome("allow", None)
    bad = [("block", "safe"), ("delete", "spam"), ("block", "nudity"), (None, "spam"), ("allow", None)]
    for decision, label in bad:
        with pytest.raises(ChoiceError):
            parse_choice(decision, label, safe=SAFE, categories=CATEGORIES)


def test_a_changed_outcome_publishes_a_superseding_human_verdict_with_a_deterministic_id() -> None:
    current = verdict("p", decision="review", category="harassment")
    choice = parse_choice("block", "harassment", safe=SAFE, categories=CATEGORIES)
    out = records_for(current=current, choice=choice, text="t", decision_id="d1", decided_at=T0 + timedelta(seconds=3))
    assert out.label.source == "human" and out.label.label == "harassment"
    assert out.label.verdict_id == current.verdict_id and not out.label.audit
    assert out.verdict is not None
    assert (out.verdict.route, out.verdict.decision, out.verdict.category) == ("human", "block", "harassment")
    assert out.verdict.supersedes == current.verdict_id
    assert out.verdict.latency_ms == pytest.approx(3000.0)
    again = records_for(current=current, choice=choice, text="t", decision_id="d1", decided_at=T0)
    assert again.verdict is not None and again.verdict.verdict_id == out.verdict.verdict_id
    other = records_for(current=current, choice=choice, text="t", decision_id="d2", decided_at=T0)
    assert other.verdict is not None and other.verdict.verdict_id != out.verdict.verdict_id


def test_confirming_the_outcome_publishes_only_a_label() -> None:
    current = verdict("p", decision="block", category="spam", route="fallback")
    choice = parse_choice("block", "spam", safe=SAFE, categories=CATEGORIES)
    out = records_for(current=current, choice=choice, text="t", decision_id="d", decided_at=T0)
    assert out.verdict is None and out.label.label == "spam"
    allowed = verdict("q", decision="allow")
    out = records_for(current=allowed, choice=parse_choice("allow", "spam", safe=SAFE, categories=CATEGORIES),
                      text="t", decision_id="d", decided_at=T0)
    assert out.verdict is None and out.label.label == "spam"


def test_only_human_verdicts_name_a_superseded_verdict() -> None:
    with pytest.raises(ValueError, match="supersedes"):
        verdict("p", route="slm", supersedes="x")
    with pytest.raises(ValueError, match="supersedes"):
        verdict("p", route="human")
