"""Intake turns every raw record into either a Post or a DeadLetter; it never raises."""

from __future__ import annotations

import pytest

from pipeline.intake import RawRecord, read_post
from pipeline.records import DeadLetter, Post


def test_a_good_record_becomes_a_post() -> None:
    out = read_post(RawRecord(b'{"id": "p1", "text": "hello"}', b"p1", "posts", 0, 3), stage="s", max_text_bytes=100)
    assert out == Post(id="p1", text="hello")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "null_value"),
        (b"\xc3\x28", "invalid_utf8"),
        (b"nope", "invalid_json"),
        (b"[]", "not_an_object"),
        (b'{"id": "p1"}', "invalid_record"),
        (b'{"id": "p1", "text": ""}', "empty_text"),
        (b'{"id": "p1", "text": "' + b"a" * 101 + b'"}', "too_large"),
    ],
)
def test_a_bad_record_becomes_a_dead_letter_with_its_coordinates(value: bytes | None, reason: str) -> None:
    out = read_post(RawRecord(value, b"k", "posts", 2, 41), stage="classify.intake", max_text_bytes=100)
    assert isinstance(out, DeadLetter)
    assert (out.reason, out.stage, out.source_topic, out.source_partition, out.source_offset, out.original_key) == (
        reason, "classify.intake", "posts", 2, 41, "k")
    assert out.original_bytes() == (value or b"")
