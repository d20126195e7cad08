"""The codec under fuzzing: any bytes or JSON value in, a record or a DecodeError out; records round-trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pipeline import codec
from pipeline.errors import DecodeError, RecordError
from pipeline.records import (
    RECORD_TYPES,
    AdjudicationRequest,
    DeadLetter,
    Label,
    Post,
    Record,
    ShadowDecision,
    Verdict,
)
from tests.fuzz.strategies import ANY_BYTES, JSON_SCALARS, NUMBERS, json_values, nested

pytestmark = pytest.mark.unit

MODELS = st.sampled_from(RECORD_TYPES)
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
ANY_TEXT = st.text(st.characters() | SURROGATES, max_size=60)


def _decoded_or_typed_error(data: bytes | str, model: type[Record], **context: Any) -> Record | None:
    """Decode, allowing only DecodeError; a decoded record must re-encode and read back as itself."""
    try:
        record = codec.decode(data, model, context=context or None)
    except DecodeError as exc:
        assert exc.reason and str(exc)
        return None
    assert codec.decode(codec.encode(record), model, context=context or None) == record
    return record


@given(data=ANY_BYTES | ANY_TEXT)
@example(data="\ud800")
@example(data=b'"\\ud800"')
@example(data=b"[" * 5000)
def test_loads_gives_a_value_or_a_decode_error(data: bytes | str) -> None:
    try:
        codec.loads(data)
    except DecodeError as exc:
        assert exc.reason in {"invalid_utf8", "invalid_json", "too_deep"}


@given(model=MODELS, data=ANY_BYTES)
def test_decode_of_any_bytes_gives_a_record_or_a_decode_error(model: type[Record], data: bytes) -> None:
    _decoded_or_typed_error(data, model)


# Values a field may meet: JSON of any shape, plus the edges of the types the records use.
_EDGE_TIMES = st.sampled_from([
    "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999999+00:00",
    "0001-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-24", "2026-11-24T10:00:00+25:00", "", "now",
])
_FIELD_VALUES = json_values(JSON_SCALARS | NUMBERS | _EDGE_TIMES | st.sampled_from(
    ["allow", "block", "review", "escalate", "slm", "frontier", "human", "urgent", "utf-8", "base64", " ", "\x00"]))


def _objects(model: type[Record]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects using the model's own field names (so validators run), with junk values and extra keys."""
    fields = {name: _FIELD_VALUES for name in model.model_fields}
    if model is AdjudicationRequest:  # give the nested post a chance to be valid
        fields["post"] = _objects(Post) | _FIELD_VALUES
    return st.fixed_dictionaries({}, optional=fields).flatmap(
        lambda obj: st.dictionaries(st.text(max_size=8), _FIELD_VALUES, max_size=3).map(lambda extra: extra | obj))


@given(data=st.data(), model=MODELS)
def test_decode_of_any_json_object_gives_a_record_or_a_decode_error(data: st.DataObject, model: type[Record]) -> None:
    obj = data.draw(_objects(model))
    # The standard library writes what orjson would refuse to (ints past 64 bits, NaN), as producers may.
    _decoded_or_typed_error(json.dumps(obj).encode(), model)


@pytest.mark.parametrize("created_at", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_post_time_that_cannot_be_given_in_utc_is_an_invalid_record(created_at: str) -> None:
    # Found by fuzzing: normalising these to UTC overflowed (OverflowError escaped decode, and read_post).
    with pytest.raises(DecodeError) as info:
        codec.decode(codec.dumps({"id": "p", "text": "t", "created_at": created_at}), Post)
    assert info.value.reason == "invalid_record" and "created_at" in str(info.value)


@pytest.mark.parametrize("pairs", [100, 150, 400])
def test_a_post_nested_deeper_than_the_encoder_writes_is_refused_at_decode(pairs: int) -> None:
    # Found by fuzzing: such a post decoded, then its AdjudicationRequest could not be encoded (orjson stops at
    # 255 levels), which would crash the worker that escalates it.
    data = b'{"id": "p", "text": "t", "meta": ' + b'{"k": [' * pairs + b"0" + b"]}" * pairs + b"}"
    with pytest.raises(DecodeError) as info:
        codec.decode(data, Post)
    assert info.value.reason == "too_deep"


def test_a_post_nested_as_deep_as_allowed_still_travels_inside_an_adjudication_request() -> None:
    meta = nested(codec.MAX_DEPTH - 2)  # the post object and meta are two levels of their own
    post = codec.decode(codec.dumps({"id": "p", "text": "t", "meta": meta}), Post)
    request = _request(post)
    assert codec.decode(codec.encode(request), AdjudicationRequest) == request


# -- round trips of valid records ---------------------------------------------------------------------------

_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
TIMES = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31), timezones=_ZONES)
NAMES = st.text(min_size=1, max_size=20)
PROBS = st.floats(0.0, 1.0)
SCORES = st.dictionaries(st.text(max_size=10), PROBS, max_size=5)
COSTS = st.floats(0.0, 1e12)
TEXT = st.text(min_size=1, max_size=200).filter(lambda t: bool(t.strip()))
POSTS = st.builds(
    Post, id=NAMES, text=TEXT, created_at=st.none() | TIMES, source=st.none() | st.text(max_size=10),
    lang=st.none() | st.text(max_size=5), meta=st.dictionaries(st.text(max_size=10), json_values(), max_size=4),
)
VERDICTS = st.builds(
    Verdict, verdict_id=NAMES, post_id=NAMES, decision=st.sampled_from(["allow", "block", "review"]),
    category=st.none() | NAMES, scores=SCORES, route=st.sampled_from(["slm", "cache", "frontier", "fallback"]),
    final=st.booleans(), model=NAMES, model_version=NAMES, policy=NAMES, policy_version=NAMES, latency_ms=COSTS,
    cost_usd=COSTS, rationale=st.none() | st.text(max_size=100), flags=st.lists(NAMES, max_size=3).map(tuple),
    decided_at=TIMES,
)


def _request(post: Post, **fields: Any) -> AdjudicationRequest:
    base: dict[str, Any] = {"scores": {"spam": 0.5}, "candidate_category": "spam", "model": "m",
                            "model_version": "1", "policy": "p", "policy_version": "v",
                            "ingested_at": datetime(2026, 1, 1, tzinfo=UTC)}
    return AdjudicationRequest(post=post, **(base | fields))


REQUESTS = st.builds(
    _request, POSTS, scores=SCORES, candidate_category=st.none() | NAMES,
    tier=st.sampled_from(["urgent", "deferrable"]), attempt=st.integers(0, 2**31), ingested_at=TIMES, enqueued_at=TIMES,
)
LABELS = st.builds(
    Label, post_id=NAMES, text=st.text(max_size=100), label=NAMES,
    labels=st.none() | st.lists(NAMES, min_size=1, max_size=3).map(tuple),
    source=st.sampled_from(["frontier", "human", "import"]), confidence=st.none() | PROBS,
    model_scores=st.none() | SCORES, model_version=st.none() | NAMES, labelled_at=TIMES,
)
DECISIONS = st.sampled_from(["allow", "block", "review", "escalate"])
SHADOWS = st.builds(
    ShadowDecision, post_id=NAMES, scores=SCORES, model_version=NAMES, live_policy_version=NAMES,
    live_decision=DECISIONS, live_category=st.none() | NAMES, shadow_policy=NAMES, shadow_policy_version=NAMES,
    shadow_decision=DECISIONS, shadow_category=st.none() | NAMES, decided_at=TIMES,
)
DEAD_LETTERS = st.builds(
    DeadLetter.of, st.binary(max_size=300) | st.text(max_size=100).map(str.encode), stage=NAMES,
    error=st.builds(ValueError, st.text(max_size=50)), reason=NAMES, key=st.none() | st.binary(max_size=20),
    topic=st.none() | NAMES, partition=st.none() | st.integers(0, 1000), offset=st.none() | st.integers(0, 2**62),
    attempts=st.integers(1, 100),
)


@given(record=POSTS | VERDICTS | REQUESTS | LABELS | SHADOWS | DEAD_LETTERS)
def test_every_valid_record_round_trips(record: Record) -> None:
    assert codec.decode(codec.encode(record), type(record)) == record


@given(meta=st.dictionaries(st.text(max_size=5), json_values(JSON_SCALARS | NUMBERS | ANY_TEXT), max_size=3))
@example(meta={"big": 2**64})
@example(meta={"lone": "\udc00"})
@example(meta={"deep": nested(300)})
def test_encode_gives_bytes_or_a_record_error(meta: dict[str, Any]) -> None:
    # Records built in Python can hold what JSON cannot (64-bit overflow, lone surrogates, depth): encoding them
    # fails with our error, never orjson's.
    post = Post(id="p", text="t", meta=meta)
    try:
        data = codec.encode(post)
    except RecordError as exc:
        assert "Post" in str(exc)
    else:
        assert isinstance(data, bytes)


@given(record=POSTS | VERDICTS | REQUESTS | LABELS | SHADOWS | DEAD_LETTERS)
def test_encode_writes_the_same_bytes_as_model_dump(record: Record) -> None:
    # The hot path encodes a record from its fields (codec.dumps_as_fields); pydantic's dump is the reference.
    assert codec.dumps_as_fields(type(record))
    reference = codec.dumps(record.model_dump(mode="python", exclude_none=False))
    assert codec.encode(record) == reference


def test_every_record_on_our_topics_is_encoded_from_its_fields() -> None:
    assert all(codec.dumps_as_fields(model) for model in RECORD_TYPES)
