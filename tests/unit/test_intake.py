"""Intake turns every raw record into either a Post or a DeadLetter; it never raises."""

from __future__ import annotations

import pytest

from pipeline.intake import RawRecord, read_post, read_posts
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


def test_a_batch_reads_as_each_record_would_alone() -> None:
    values = [b'{"id": "p1", "text": "hello"}', None, b"\xc3\x28", b"nope", b"[]", b'{"id": 7, "text": "seven"}',
              b'{"id": "p1"}', b'{"id": "p1", "text": ""}', b'{"id": "p2", "text": "' + b"a" * 101 + b'"}',
              b'{"id": "p3", "text": "ok", "extra": 1}', b'{"id": "p4", "text": "' + b"b" * 300 + b'"}']
    raws = [RawRecord(value, b"k%d" % i, "posts", 1, i) for i, value in enumerate(values)]
    limits = {"stage": "classify.intake", "max_text_bytes": 100, "max_post_bytes": 250, "dead_letter_max_bytes": 64}
    def comparable(item: Post | DeadLetter) -> object:
        return item.model_dump(exclude={"failed_at"}) if isinstance(item, DeadLetter) else item

    together = read_posts(raws, **limits)  # type: ignore[arg-type]
    alone = [read_post(raw, **limits) for raw in raws]  # type: ignore[arg-type]
    assert [comparable(item) for item in together] == [comparable(item) for item in alone]
    assert sum(isinstance(item, Post) for item in together) == 3
