"""Bounded outputs (issue 16): dead letters keep at most a cap of the original bytes, intake bounds a post's record,
and the size settings are checked against each other and against the worst-case size of every output."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from pipeline import codec
from pipeline.backends.fake import FakeClassifier
from pipeline.cascade.cache import ScoreCache
from pipeline.cascade.stage import ClassifyStage
from pipeline.errors import SettingsError
from pipeline.intake import RawRecord, read_post
from pipeline.kafka import make_consumer, make_producer
from pipeline.kafka.topics import default_configs
from pipeline.metrics import Metrics
from pipeline.policy import load_policy
from pipeline.records import (
    DEAD_LETTER_KEY_BYTES,
    DEAD_LETTER_MESSAGE_CHARS,
    DeadLetter,
    Label,
    Post,
    Verdict,
    dead_letter_bound,
    label_bound,
)
from pipeline.retry import Backoff
from pipeline.settings import Settings, check_message_sizes, message_size_problems
from pipeline.stage import dead_letter
from tests.support.cascade import REPO

pytestmark = pytest.mark.unit

CAP = 1000


def letter(raw: bytes, *, cap: int = CAP, key: bytes | None = b"k", error: str = "bad") -> DeadLetter:
    return DeadLetter.of(raw, stage="classify.intake", error=ValueError(error), reason="too_large", key=key,
                         topic="posts", partition=1, offset=7, max_original_bytes=cap)


def test_a_value_within_the_cap_is_kept_whole_with_its_size_and_hash() -> None:
    raw = b'{"id": "p", "text": "' + b"a" * 900 + b'"}'
    dl = letter(raw)
    assert (dl.original_bytes(), dl.original_encoding, dl.original_truncated) == (raw, "utf-8", False)
    assert (dl.original_size, dl.original_sha256) == (len(raw), hashlib.sha256(raw).hexdigest())


def test_past_the_cap_a_dead_letter_keeps_the_first_bytes_and_says_so() -> None:
    raw = b"x" * 10_000_000
    dl = letter(raw)
    assert dl.original_truncated and dl.original_bytes() == raw[:CAP]
    assert (dl.original_size, dl.original_sha256) == (10_000_000, hashlib.sha256(raw).hexdigest())
    assert len(codec.encode(dl)) < 2 * CAP


def test_a_text_cut_inside_a_character_keeps_whole_characters() -> None:
    raw = "é".encode() * 1000  # two bytes each: the cap (odd) falls inside one
    dl = letter(raw, cap=CAP + 1)
    assert dl.original_encoding == "utf-8" and dl.original_bytes() == raw[:CAP]
    assert dl.original_truncated and dl.original_size == 2000


def test_bytes_that_are_not_utf8_keep_a_base64_prefix() -> None:
    raw = b"\xff\xfe" * 5000
    dl = letter(raw)
    assert dl.original_encoding == "base64" and base64.b64decode(dl.original) == raw[:CAP]
    assert dl.original_bytes() == raw[:CAP]


def test_a_cap_of_zero_keeps_only_size_and_hash() -> None:
    dl = letter(b"abc", cap=0)
    assert (dl.original, dl.original_truncated, dl.original_size) == ("", True, 3)


def test_keys_and_messages_are_cut() -> None:
    dl = letter(b"v", key=b"k" * 5000, error="e" * 100_000)
    assert dl.original_key == "k" * DEAD_LETTER_KEY_BYTES and dl.original_key_truncated
    assert dl.message.startswith("e" * DEAD_LETTER_MESSAGE_CHARS) and len(dl.message) < DEAD_LETTER_MESSAGE_CHARS + 64
    out = dead_letter(dl, RawRecord(b"v", b"k" * 5000))
    assert out.key == b"k" * DEAD_LETTER_KEY_BYTES


def test_the_worst_dead_letter_stays_within_its_bound() -> None:
    # Control characters are what JSON spends most bytes on (\u0001: six bytes for one).
    raw, key, message = b"\x01" * 50_000, b"\x01" * 5000, "\x01" * 50_000
    dl = DeadLetter.of(raw, stage="s" * 40, error=ValueError(), reason="too_large", key=key, topic="t" * 249,
                       partition=2**31 - 1, offset=2**63 - 1, message=message, max_original_bytes=CAP)
    out = dead_letter(dl, RawRecord(raw, key))
    assert len(out.value) + len(out.key or b"") <= dead_letter_bound(CAP)
    assert len(out.value) > 5 * CAP  # the bound is not loose by orders of magnitude


def test_the_worst_label_stays_within_its_bound() -> None:
    text = "\x01" * 5000
    label = Label(post_id="\x01" * 512, text=text, label="spam", source="frontier", model_scores={"spam": 0.5},
                  model_version="m" * 100, policy_version="v" * 64, rationale="\x01" * 600)
    assert len(codec.encode(label)) + len(label.post_id.encode()) <= label_bound(5000)


def test_old_dead_letters_without_the_new_fields_still_decode() -> None:
    old = b'{"schema_version": 1, "original": "x", "original_encoding": "utf-8", "stage": "s", "error_type": "E", ' \
          b'"reason": "r", "message": "m"}'
    dl = codec.decode(old, DeadLetter)
    assert (dl.original_size, dl.original_sha256, dl.original_truncated) == (None, None, False)


def test_intake_dead_letters_a_record_over_max_post_bytes_before_parsing_it() -> None:
    big = RawRecord(b'{"id": "p", "text": "hi", "meta": {"pad": "' + b"z" * 5000 + b'"}}', b"p", "posts", 0, 3)
    out = read_post(big, stage="classify.intake", max_text_bytes=100, max_post_bytes=4096, dead_letter_max_bytes=64)
    assert isinstance(out, DeadLetter) and out.reason == "too_large" and "MODCASCADE_MAX_POST_BYTES" in out.message
    assert out.original_truncated and out.original_bytes() == (big.value or b"")[:64]
    assert out.original_size == len(big.value or b"")
    small = read_post(big, stage="classify.intake", max_text_bytes=100, max_post_bytes=len(big.value or b""))
    assert isinstance(small, Post)


async def test_the_classify_stage_bounds_its_dead_letters_and_names_the_source_of_every_output() -> None:
    policy = load_policy(REPO / "policies" / "default.yaml")
    labels = (policy.taxonomy.safe, *policy.taxonomy.categories)
    stage = ClassifyStage(FakeClassifier(labels), lambda: policy, cache=ScoreCache(10, 60),
                          metrics=Metrics.create(CollectorRegistry()), max_text_bytes=100, max_post_bytes=2000,
                          dead_letter_max_bytes=128, backoff=Backoff(1.0, 2.0),
                          clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    records = [RawRecord(b'{"id": "ok", "text": "hello"}', b"ok", "posts", 0, 0),
               RawRecord(b"\xff" * 3_000_000, b"k" * 4000, "posts", 0, 1)]

    async def no_wait(seconds: float) -> None:
        raise AssertionError("the fake classifier never fails")

    outputs = await stage.process(records, no_wait)
    by_source = {out.source.offset if out.source else None: out for out in outputs}
    assert set(by_source) == {0, 1}
    assert isinstance(by_source[0].record, Verdict) or by_source[0].role == "adjudication"
    dead = by_source[1]
    assert isinstance(dead.record, DeadLetter) and dead.record.reason == "too_large"
    assert len(dead.value) < 4000 and dead.key == b"k" * DEAD_LETTER_KEY_BYTES


# -- the startup check ---------------------------------------------------------------------------------


def sized(**changes: int) -> Settings:
    base = Settings()
    kafka = {k: v for k, v in changes.items() if k in type(base.kafka).model_fields}
    top = {k: v for k, v in changes.items() if k not in kafka}
    return base.model_copy(update={**top, "kafka": base.kafka.model_copy(update=kafka)})


def test_the_defaults_agree() -> None:
    assert message_size_problems(Settings()) == []
    check_message_sizes(Settings())


@pytest.mark.parametrize(("changes", "names"), [
    ({"max_request_size": 2_000_000},
     ["MODCASCADE_KAFKA_TOPIC_MAX_MESSAGE_BYTES=1048588", "MODCASCADE_KAFKA_MAX_PARTITION_FETCH_BYTES=1048576"]),
    ({"fetch_max_bytes": 500_000}, ["MODCASCADE_KAFKA_FETCH_MAX_BYTES=500000"]),
    ({"batch_size": 2_000_000}, ["MODCASCADE_KAFKA_BATCH_SIZE=2000000 is above MODCASCADE_KAFKA_MAX_REQUEST_SIZE"]),
    ({"max_text_bytes": 200_000}, ["MODCASCADE_MAX_TEXT_BYTES=200000", "lower MODCASCADE_MAX_TEXT_BYTES (e.g. to "
                                   "172032)"]),
    ({"max_text_bytes": 100_000, "max_post_bytes": 50_000}, ["is above MODCASCADE_MAX_POST_BYTES=50000"]),
    ({"max_post_bytes": 2_000_000}, ["MODCASCADE_MAX_POST_BYTES=2000000", "adjudication request"]),
    ({"dead_letter_max_bytes": 1_000_000}, ["MODCASCADE_DEAD_LETTER_MAX_BYTES=1000000", "a dead letter"]),
])
def test_disagreeing_sizes_are_refused_naming_the_settings_and_the_fix(changes: dict[str, int],
                                                                      names: list[str]) -> None:
    with pytest.raises(SettingsError) as info:
        check_message_sizes(sized(**changes))
    message = str(info.value)
    assert "docs/message-sizes.md" in message
    for name in names:
        assert name in message


def test_the_suggested_text_limit_is_the_largest_that_fits() -> None:
    settings = sized(max_text_bytes=200_000)
    assert label_bound(172_032) <= settings.kafka.max_request_size < label_bound(172_033)


async def test_clients_and_topics_get_the_sizes_from_settings() -> None:
    settings = sized(max_request_size=2_000_000, topic_max_message_bytes=2_000_012, max_partition_fetch_bytes=3_000_000,
                     fetch_max_bytes=9_000_000)
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap": "kafka:9092"})})
    check_message_sizes(settings)
    producer = make_producer(settings)
    consumer = make_consumer(settings, "posts", group_id=None)
    try:
        assert producer._max_request_size == 2_000_000
        assert producer._message_accumulator._batch_size == settings.kafka.batch_size  # Kafka's batch.size
        assert (consumer._max_partition_fetch_bytes, consumer._fetch_max_bytes) == (3_000_000, 9_000_000)
    finally:
        await consumer.stop()
        await producer.stop()
    configs = default_configs(settings)
    assert set(configs) == set(settings.topics.all().values())
    assert {c["max.message.bytes"] for c in configs.values()} == {"2000012"}
    assert configs[settings.topics.all()["verdicts"]]["cleanup.policy"] == "compact"
