"""PII scrubbing: what each kind replaces, and the ordinary text it must leave alone."""

from __future__ import annotations

import pytest

from pipeline.dataset.pii import scrub
from pipeline.policy import PiiKind

ALL: tuple[PiiKind, ...] = ("emails", "phones", "urls", "handles")


@pytest.mark.parametrize(("text", "expected"), [
    ("mail me at jane@example.com", "mail me at [EMAIL]"),
    ("john.doe+promo@mail.example.co.uk.", "[EMAIL]."),
    ("(jane_d-1@sub.example.org)", "([EMAIL])"),
])
def test_emails_become_a_placeholder(text: str, expected: str) -> None:
    assert scrub(text, ["emails"]) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("call (555) 123-4567 now", "call [PHONE] now"),
    ("555-123-4567 or 555.123.4567 or 555 123 4567", "[PHONE] or [PHONE] or [PHONE]"),
    ("text 1-800-555-0199!", "text [PHONE]!"),
    ("ring 5552345678", "ring [PHONE]"),
    ("+44 7911 123456 / +1 (555) 123-4567 / +4915112345678", "[PHONE] / [PHONE] / [PHONE]"),
    ("07911 123456, 020 7946 0958, 06 12 34 56 78, 06.12.34.56.78", "[PHONE], [PHONE], [PHONE], [PHONE]"),
])
def test_phone_numbers_become_a_placeholder(text: str, expected: str) -> None:
    assert scrub(text, ["phones"]) == expected


@pytest.mark.parametrize("text", [
    "back in 2024, and 1999 to 2003",
    "only $1,299.99 or 5,000,000 or 2,000,000,000",
    "pi is 3.14159265 and v1.2.3 and 192.168.100.200",
    "unix time 1700000000, range 10-20, score 100 200 3000",
    "on 05.11.2024 12:00 with 05.11.2024 15 people, 2024-01-15T10:30:00",
    "my local number is 555-1234",
    "page 12 of 300, 7 days, 24/7",
])
def test_ordinary_numbers_are_not_phones(text: str) -> None:
    assert scrub(text, ALL) == text


@pytest.mark.parametrize(("text", "expected"), [
    ("see https://example.com/a?b=c, ok", "see [URL], ok"),
    ("http://x.io/p.", "[URL]."),
    ("go to www.example.org.", "go to [URL]."),
    ("click bit.ly/xyz now", "click [URL] now"),
    ("example.com's terms", "[URL]'s terms"),
    ("mirror at ftp://files.example.net/pub/", "mirror at [URL]"),
])
def test_urls_with_and_without_a_scheme_become_a_placeholder(text: str, expected: str) -> None:
    assert scrub(text, ["urls"]) == expected


@pytest.mark.parametrize("text", ["e.g. this, i.e. that", "open file.txt in Node.js", "U.S. politics", "3.5 stars"])
def test_ordinary_dotted_words_are_not_urls(text: str) -> None:
    assert scrub(text, ALL) == text


@pytest.mark.parametrize(("text", "expected"), [
    ("hey @john_doe!", "hey [HANDLE]!"),
    ("ask @jane.doe.", "ask [HANDLE]."),
    ("cc @user@mastodon.social", "cc [HANDLE]"),
    ("@bob's post", "[HANDLE]'s post"),
])
def test_handles_become_a_placeholder(text: str, expected: str) -> None:
    assert scrub(text, ["handles"]) == expected


def test_a_handle_is_not_the_at_of_an_email_or_a_time() -> None:
    assert scrub("jane@example.com, see you @5pm, meet @ noon", ["handles"]) == \
        "jane@example.com, see you @5pm, meet @ noon"


def test_only_the_kinds_asked_for_are_scrubbed() -> None:
    text = "jane@example.com @jane example.com 555-123-4567"
    assert scrub(text, []) == text
    assert scrub(text, ["urls"]) == "jane@example.com @jane [URL] 555-123-4567"
    assert scrub(text, ["emails", "phones"]) == "[EMAIL] @jane example.com [PHONE]"


def test_all_kinds_together_and_in_any_order() -> None:
    text = "DM @promo_bot or mail deals@shop.example.com, visit https://shop.example.com/x or call +1 555 123 4567"
    expected = "DM [HANDLE] or mail [EMAIL], visit [URL] or call [PHONE]"
    assert scrub(text, ALL) == expected
    assert scrub(text, tuple(reversed(ALL))) == expected


def test_scrubbing_is_idempotent() -> None:
    once = scrub("x@y.com @z www.a.com 555-123-4567", ALL)
    assert scrub(once, ALL) == once


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown PII kinds"):
        scrub("text", ["ssn"])  # type: ignore[list-item]
