"""Records and the codec: what producers may send, what consumers get, and how bad bytes fail."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, computed_field

from pipeline import codec
from pipeline.cascade.route import ModelRef, make_verdict, origin_ms
from pipeline.errors import DecodeError
from pipeline.policy import decide, load_policy
from pipeline.records import (
    SCHEMA_VERSION,
    AdjudicationRequest,
    DeadLetter,
    Label,
    Post,
    Record,
    Verdict,
    verdict_id,
)
from tests.support.evaluation import DEFAULT_POLICY
from tests.support.samples import sample_records


@pytest.mark.parametrize("record", sample_records(), ids=lambda r: type(r).__name__)
def test_every_record_round_trips_through_the_codec(record: Record) -> None:
    data = codec.encode(record)
    assert codec.decode(data, type(record)) == record
    assert codec.loads(data)["schema_version"] == SCHEMA_VERSION


def test_post_minimal_form_is_just_id_and_text() -> None:
    post = codec.decode(b'{"id": "p1", "text": "hello"}', Post)
    assert post == Post(id="p1", text="hello")
    assert post.schema_version == SCHEMA_VERSION


def test_post_keeps_unknown_fields_in_meta_and_never_crashes() -> None:
    post = codec.decode(b'{"id": "p1", "text": "hi", "author": "ann", "meta": {"thread": 7}}', Post)
    assert post.meta == {"author": "ann", "thread": 7}


def test_numeric_post_id_becomes_a_string() -> None:
    assert codec.decode(b'{"id": 42, "text": "hi"}', Post).id == "42"


def test_created_at_accepts_iso_8601_and_is_encoded_in_utc() -> None:
    post = codec.decode(b'{"id": "p", "text": "t", "created_at": "2026-11-24T10:00:00+01:00"}', Post)
    assert post.created_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert b'"created_at":"2026-11-24T09:00:00Z"' in codec.encode(post)


def test_naive_created_at_is_taken_as_utc() -> None:
    post = codec.decode(b'{"id": "p", "text": "t", "created_at": "2026-11-24T09:00:00"}', Post)
    assert post.created_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe\x00garbage", "invalid_utf8"),
        (b'{"id": "p1", "text": "caf\xe9"}', "invalid_utf8"),
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b'["id", "text"]', "not_an_object"),
        (b'"just a string"', "not_an_object"),
        (b'{"text": "no id"}', "invalid_record"),
        (b'{"id": "p1"}', "invalid_record"),
        (b'{"id": "", "text": "empty id"}', "invalid_record"),
        (b'{"id": "p1", "text": 12}', "invalid_record"),
        (b'{"id": "p1", "text": "   "}', "empty_text"),
        (b'{"id": "p1", "text": "' + b"x" * 100 + b'"}', "too_large"),
    ],
)
def test_malformed_bytes_fail_with_a_typed_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode(raw, Post, context={"max_text_bytes": 64})
    assert info.value.reason == reason
    assert str(info.value)  # a human-readable message for the dead letter


def test_text_size_limit_counts_utf8_bytes_not_characters() -> None:
    text = "é" * 40  # 40 characters, 80 bytes
    with pytest.raises(DecodeError) as info:
        codec.decode(codec.dumps({"id": "p", "text": text}), Post, context={"max_text_bytes": 64})
    assert info.value.reason == "too_large"


def test_verdict_rejects_probabilities_outside_zero_one() -> None:
    good = codec.loads(codec.encode(sample_records()[1]))
    good["scores"] = {"spam": 1.5}
    with pytest.raises(DecodeError) as info:
        codec.decode(codec.dumps(good), Verdict)
    assert "scores.spam" in str(info.value)


def test_label_needs_a_label() -> None:
    with pytest.raises(DecodeError):
        codec.decode(b'{"post_id": "p", "text": "t", "source": "human"}', Label)


def test_verdict_id_is_deterministic_per_post_and_policy_version() -> None:
    assert verdict_id("p1", "abc") == verdict_id("p1", "abc")
    assert verdict_id("p1", "abc") != verdict_id("p1", "abd")
    assert verdict_id("p1", "abc") != verdict_id("p2", "abc")
    # The separator keeps ("a", "bc") and ("ab", "c") apart.
    assert verdict_id("a", "bc") != verdict_id("ab", "c")


def test_dead_letter_keeps_utf8_originals_as_text() -> None:
    dl = DeadLetter.of(b'{"oops', stage="classify.decode", error=ValueError("bad"), reason="invalid_json",
                       key=b"p1", topic="posts", partition=2, offset=17)
    assert (dl.original, dl.original_encoding) == ('{"oops', "utf-8")
    assert (dl.stage, dl.error_type, dl.reason, dl.message) == ("classify.decode", "ValueError", "invalid_json", "bad")
    assert (dl.original_key, dl.source_topic, dl.source_partition, dl.source_offset) == ("p1", "posts", 2, 17)


def test_dead_letter_keeps_non_utf8_originals_byte_exact_as_base64() -> None:
    raw = b"\x00\xff\xfe binary"
    dl = DeadLetter.of(raw, stage="classify.decode", error=ValueError("x"), reason="invalid_utf8")
    assert dl.original_encoding == "base64"
    assert base64.b64decode(dl.original) == raw
    assert codec.decode(codec.encode(dl), DeadLetter).original_bytes() == raw


def test_records_ignore_unknown_fields_from_newer_producers() -> None:
    data = codec.loads(codec.encode(sample_records()[2]))
    data["added_in_v2"] = True
    assert isinstance(codec.decode(codec.dumps(data), AdjudicationRequest), AdjudicationRequest)


def test_records_are_frozen() -> None:
    post = Post(id="p", text="t")
    with pytest.raises(ValueError, match="frozen"):
        post.text = "changed"  # type: ignore[misc]


class _Renamed(BaseModel):
    name: str = Field(serialization_alias="title")


class _Derived(BaseModel):
    n: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def double(self) -> int:
        return 2 * self.n


class _Holder(BaseModel):
    inner: list[_Derived]
    self_ref: _Holder | None = None


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


@pytest.mark.parametrize("model", [_Renamed, _Derived, _Holder, _Open])
def test_a_model_whose_dump_is_not_its_fields_is_encoded_through_model_dump(model: type[BaseModel]) -> None:
    assert not codec.dumps_as_fields(model)


def test_encode_keeps_what_model_dump_adds() -> None:
    assert codec.loads(codec.encode(_Holder(inner=[_Derived(n=2)]))) == {
        "inner": [{"n": 2, "double": 4}], "self_ref": None}
    assert codec.loads(codec.encode(_Renamed(name="x"))) == {"name": "x"}  # model_dump(by_alias=False), as before
    assert codec.loads(codec.encode(_Open(extra_field=1))) == {"extra_field": 1}


# -- records assembled without validation (the hot path's own outputs) ----------------------------------------------

_POLICY = load_policy(DEFAULT_POLICY)
_LABELS = (_POLICY.taxonomy.safe, *_POLICY.taxonomy.categories)


@given(
    post_id=st.text(min_size=1, max_size=40),
    probabilities=st.lists(st.floats(0.0, 1.0), min_size=len(_LABELS), max_size=len(_LABELS)),
    route=st.sampled_from(["slm", "cache"]),
    guard=st.one_of(st.none(), st.sampled_from(_POLICY.taxonomy.categories)),
    latency_s=st.floats(-5.0, 1e6),
)
def test_an_assembled_verdict_is_the_one_validation_builds(post_id: str, probabilities: list[float], route: str,
                                                          guard: str | None, latency_s: float) -> None:
    scores = dict(zip(_LABELS, probabilities, strict=True))
    outcome = decide(scores, _POLICY)
    assume(outcome.final)
    now = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    verdict = make_verdict(Post(id=post_id, text="t"), scores, outcome, route=route,  # type: ignore[arg-type]
                           policy=_POLICY, model=ModelRef("m", "v1"), origin=now - timedelta(seconds=latency_s),
                           now=now, guard=guard)
    validated = Verdict.model_validate(verdict.model_dump())
    assert verdict == validated and verdict.model_fields_set == validated.model_fields_set
    assert codec.encode(verdict) == codec.encode(validated)
    assert list(verdict.__dict__) == list(Verdict.model_fields)


def test_assembling_a_record_without_every_field_names_them_all() -> None:
    with pytest.raises(TypeError, match="takes every field, in order: schema_version, verdict_id, post_id, decision"):
        Verdict.assemble({"post_id": "p"})


def test_a_verdicts_latency_runs_from_created_at_else_the_record_timestamp_else_the_read() -> None:
    read_at_ms = datetime(2026, 12, 7, 6, 0, tzinfo=UTC).timestamp() * 1000.0
    created = datetime(2026, 12, 7, 5, 59, 58, 500_000, tzinfo=UTC)
    record_ms = int(read_at_ms) - 700
    assert origin_ms(Post(id="p", text="t", created_at=created), record_ms, read_at_ms) == read_at_ms - 1500.0
    assert origin_ms(Post(id="p", text="t"), record_ms, read_at_ms) == read_at_ms - 700.0
    assert origin_ms(Post(id="p", text="t"), None, read_at_ms) == origin_ms(Post(id="p", text="t"), 0, read_at_ms)
    assert origin_ms(Post(id="p", text="t"), None, read_at_ms) == read_at_ms
