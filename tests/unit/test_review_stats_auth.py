"""Reviewer statistics and credentials (pure parts of the review console)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.errors import SettingsError
from pipeline.review import auth
from pipeline.review.stats import DecisionRow, compute
from tests.support.review import T0

pytestmark = pytest.mark.unit


def row(item: int, who: str, minutes: float, label: str, frontier: str | None = None,
        decision: str = "block") -> DecisionRow:
    return DecisionRow(item, who, T0 + timedelta(minutes=minutes), decision, label, frontier)


def test_statistics_count_rates_and_agreement_honestly() -> None:
    rows = [
        row(1, "alice", 0, "spam", frontier="spam"),
        row(1, "bob", 10, "spam", frontier="spam"),  # double review: agree
        row(2, "alice", 30, "spam", frontier="harassment"),
        row(2, "bob", 40, "harassment", frontier="harassment"),  # double review: disagree
        row(3, "alice", 90, "safe", decision="allow"),  # no frontier judgement
    ]
    stats = compute(rows, now=T0 + timedelta(minutes=100))
    assert stats.decisions == 5
    assert (stats.with_frontier.agree, stats.with_frontier.total) == (3, 4)
    assert (stats.between_reviewers.agree, stats.between_reviewers.total) == (1, 2)
    alice, bob = stats.reviewers
    assert (alice.reviewer, alice.decisions, alice.last_hour) == ("alice", 3, 1)
    assert alice.per_active_hour == pytest.approx(3 / 1.5)
    assert (alice.with_frontier.agree, alice.with_frontier.total) == (1, 2)
    assert (bob.with_reviewers.agree, bob.with_reviewers.total) == (1, 2)
    assert str(bob.with_frontier) == "100% of 2"


def test_one_decision_has_no_rate_and_no_shares() -> None:
    stats = compute([row(1, "carol", 0, "safe", decision="allow")], now=T0)
    (carol,) = stats.reviewers
    assert carol.per_active_hour is None and carol.last_hour == 1
    assert carol.with_frontier.rate is None and str(carol.with_reviewers) == "-"


def test_passwords_are_salted_scrypt_hashes() -> None:
    hashed = auth.hash_password("correct horse", log2_n=10)
    assert hashed.startswith("scrypt$10$8$1$") and ":" not in hashed and "," not in hashed
    assert auth.verify_password("correct horse", hashed)
    assert not auth.verify_password("wrong horse", hashed)
    assert auth.hash_password("correct horse", log2_n=10) != hashed
    assert not auth.verify_password("x", "scrypt$99$8$1$AAAA$AAAA")
    assert not auth.verify_password("x", "plain-text-password")


def test_configured_reviewers_are_parsed_and_checked() -> None:
    a, b = auth.hash_password("pa", log2_n=10), auth.hash_password("pb", log2_n=10)
    users = auth.parse_users(f"alice:{a}, bob:{b}")
    assert set(users) == {"alice", "bob"}
    assert auth.check_login(users, "alice", "pa")
    assert not auth.check_login(users, "alice", "pb")
    assert not auth.check_login(users, "mallory", "pa")
    for spec in ["", "alice", f"alice:{a},alice:{a}", "alice:plaintext", f"bad name:{a}"]:
        with pytest.raises(SettingsError, match="MODCASCADE_REVIEW_USERS"):
            auth.parse_users(spec)


def test_csrf_tokens_match_only_exactly() -> None:
    token = auth.new_token()
    assert auth.tokens_match(token, token)
    assert not auth.tokens_match(token, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not auth.tokens_match(token, None) and not auth.tokens_match(None, token) and not auth.tokens_match("", "")
