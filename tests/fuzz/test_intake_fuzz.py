"""Intake under fuzzing: whatever a record holds, ``read_post`` gives a Post or a DeadLetter and never raises."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from pipeline import codec
from pipeline.intake import RawRecord, read_post
from pipeline.records import JSON_ESCAPE_FACTOR, RECORD_OVERHEAD_BYTES, AdjudicationRequest, DeadLetter, Post
from tests.fuzz.strategies import ANY_BYTES, NUMBERS, json_values

pytestmark = pytest.mark.unit

STAGE = "classify.intake"


def _post_like(text: st.SearchStrategy[object]) -> st.SearchStrategy[bytes]:
    """Objects shaped like posts, with junk in any field; written by the standard library, as a producer might."""
    fields = {"id": st.text(max_size=10) | NUMBERS | st.booleans(), "text": text,
              "created_at": st.text(max_size=30) | NUMBERS, "meta": json_values(), "lang": json_values()}
    return st.fixed_dictionaries({}, optional=fields).map(lambda obj: json.dumps(obj).encode())


# Texts from empty to several MB: sizes are drawn, the bytes are made, so big ones cost nothing to generate.
SIZES = st.sampled_from([0, 1, 65_535, 65_536, 1_048_576, 2_097_152, 3_000_000]) | st.integers(0, 3_000_000)
_SIZED = st.tuples(SIZES, st.sampled_from([b"a", b" ", b"\xc3\xa9", b"\xf0\x9f\x8e\x89", b"\xff"]))
HUGE = _SIZED.map(lambda s: b'{"id": "p", "text": "' + s[1] * (s[0] // len(s[1])) + b'"}')
NESTED = (st.sampled_from([63, 64, 65, 127, 300, 511]) | st.integers(1, 600)).map(
    lambda n: b'{"id": "p", "text": "t", "meta": ' + b'{"k": [' * n + b"]}" * n + b"}")
# Mostly valid posts: a real id and text, junk in the optional fields and unknown keys.
VALID = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=10), "text": st.text(min_size=1).filter(str.strip)},
    optional={"created_at": st.datetimes().map(datetime.isoformat), "meta": st.dictionaries(st.text(), json_values()),
              "source": st.text(), "extra": json_values()},
).map(lambda obj: json.dumps(obj).encode())
VALUES = st.none() | ANY_BYTES | _post_like(json_values()) | VALID | HUGE | NESTED

RECORDS = st.builds(
    RawRecord, value=VALUES, key=st.none() | st.binary(max_size=40), topic=st.none() | st.text(max_size=20),
    partition=st.none() | st.integers(0, 2**31 - 1), offset=st.none() | st.integers(0, 2**63 - 1),
    timestamp_ms=st.none() | st.integers(0, 2**63 - 1),
)


def _check_dead_letter(letter: DeadLetter, raw: RawRecord, stage: str, cap: int) -> None:
    assert letter.stage == stage
    assert letter.reason and letter.error_type and letter.message
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (raw.topic, raw.partition,
                                                                                    raw.offset)
    # The original: whole when it fits the cap, else a prefix, with the size and digest of the whole either way.
    original = raw.value if raw.value is not None else b""
    kept = letter.original_bytes()
    assert original.startswith(kept) and len(kept) <= cap
    assert (letter.original_size, letter.original_sha256) == (len(original), hashlib.sha256(original).hexdigest())
    assert letter.original_truncated == (len(original) > cap)
    if not letter.original_truncated:
        assert kept == original
    # A dead letter must itself be publishable (bounded, whatever arrived) and readable.
    data = codec.encode(letter)
    assert len(data) <= JSON_ESCAPE_FACTOR * cap + RECORD_OVERHEAD_BYTES
    assert codec.decode(data, DeadLetter) == letter


def _check_post(post: Post, max_text_bytes: int) -> None:
    assert post.id and post.text.strip()
    assert len(post.text.encode("utf-8")) <= max_text_bytes
    assert codec.decode(codec.encode(post), Post) == post
    # A post that is read is a post that can be escalated.
    request = AdjudicationRequest(post=post, scores={}, candidate_category=None, model="m", model_version="1",
                                  policy="p", policy_version="v", ingested_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert codec.decode(codec.encode(request), AdjudicationRequest) == request


CAPS = st.sampled_from([0, 1, 3, 1024, 65_536]) | st.integers(0, 200_000)
LIMITS = st.sampled_from([32_768, 4_000_000]) | SIZES.map(lambda n: max(n, 1))


@given(raw=RECORDS, max_text_bytes=LIMITS, max_post_bytes=st.none() | LIMITS, cap=CAPS,
       stage=st.text(min_size=1, max_size=30))
@example(raw=RawRecord(b'{"id": "p", "text": "t", "created_at": "9999-12-31T23:59:59-01:00"}'), max_text_bytes=100,
         max_post_bytes=None, cap=65_536, stage=STAGE)
@example(raw=RawRecord(b'{"id": "p", "text": "t", "meta": ' + b"[" * 300 + b"]" * 300 + b"}"), max_text_bytes=100,
         max_post_bytes=None, cap=65_536, stage=STAGE)
@example(raw=RawRecord(None, b"\xff"), max_text_bytes=1, max_post_bytes=1, cap=0, stage=STAGE)
@example(raw=RawRecord(b"\xe2\x82\xac" * 10), max_text_bytes=1, max_post_bytes=None, cap=4, stage=STAGE)
def test_every_record_becomes_a_post_or_a_dead_letter(raw: RawRecord, max_text_bytes: int, max_post_bytes: int | None,
                                                      cap: int, stage: str) -> None:
    out = read_post(raw, stage=stage, max_text_bytes=max_text_bytes, max_post_bytes=max_post_bytes,
                    dead_letter_max_bytes=cap)
    event(f"{type(out).__name__} {getattr(out, 'reason', '')}".strip())
    if isinstance(out, Post):
        assert raw.value is not None and len(raw.value) <= (max_post_bytes or len(raw.value))
        _check_post(out, max_text_bytes)
    else:
        assert isinstance(out, DeadLetter)
        _check_dead_letter(out, raw, stage, cap)


@given(size=SIZES, limit=LIMITS)
def test_the_text_limit_decides_between_post_and_too_large(size: int, limit: int) -> None:
    raw = RawRecord(b'{"id": "p", "text": "' + b"x" * size + b'"}', b"p", "posts", 0, 1)
    out = read_post(raw, stage=STAGE, max_text_bytes=limit)
    if size == 0:
        assert isinstance(out, DeadLetter) and out.reason == "empty_text"
    elif size > limit:
        assert isinstance(out, DeadLetter) and out.reason == "too_large"
    else:
        assert isinstance(out, Post) and len(out.text) == size
