"""Every record type survives the trip through the broker with the codec; malformed bytes come back
byte-exact and decode to the DecodeError reason the dead-letter path relies on."""

from __future__ import annotations

import pytest

from pipeline import codec
from pipeline.errors import DecodeError
from pipeline.records import (
    RECORD_TYPES,
    AdjudicationRequest,
    Alert,
    BudgetLedger,
    DeadLetter,
    GuardState,
    Label,
    Post,
    Record,
    ShadowDecision,
    Verdict,
)
from pipeline.settings import Settings
from tests.support.kafka import ConsumerFactory, ProducerFactory, TopicFactory, read_records
from tests.support.samples import sample_records

pytestmark = pytest.mark.broker


def _key(record: Record) -> str:
    """The Kafka key the workers publish each record under: the post id, or the record's own key."""
    match record:
        case Post():
            return record.id
        case Verdict() | Label() | ShadowDecision():
            return record.post_id
        case AdjudicationRequest():
            return record.post.id
        case DeadLetter():
            assert record.original_key is not None
            return record.original_key
        case Alert() | GuardState() | BudgetLedger():
            return record.key
    raise AssertionError(f"no key for {type(record).__name__}")


async def test_every_record_type_round_trips_through_the_broker(
    topic_factory: TopicFactory, producer_factory: ProducerFactory, consumer_factory: ConsumerFactory,
) -> None:
    records = sample_records()
    assert {type(r) for r in records} == set(RECORD_TYPES)
    topic = await topic_factory("records")
    producer = await producer_factory()
    for record in records:
        await producer.send(topic, codec.encode(record), key=_key(record).encode())
    await producer.flush()

    consumed = await read_records(await consumer_factory(topic), len(records))
    for original, message in zip(records, consumed, strict=True):
        assert message.key == _key(original).encode()
        assert codec.decode(message.value, type(original)) == original


MALFORMED = [
    (b"\xff\xfe{}", "invalid_utf8"),
    (b'{"id": "p1", "text": ', "invalid_json"),
    (b'["p1", "hello"]', "not_an_object"),
    (b'{"id": "p1", "txt": "hello"}', "invalid_record"),
    (b'{"id": "p1", "text": "  \\n "}', "empty_text"),
]


async def test_malformed_bytes_come_back_exact_and_decode_to_their_reason(
    kafka_settings: Settings,
    topic_factory: TopicFactory, producer_factory: ProducerFactory, consumer_factory: ConsumerFactory,
) -> None:
    limit = kafka_settings.max_text_bytes
    cases = [*MALFORMED, (b'{"id": "p1", "text": "' + b"a" * (limit + 1) + b'"}', "too_large")]
    topic = await topic_factory("malformed")
    producer = await producer_factory()
    for value, _ in cases:
        await producer.send(topic, value, key=b"p1")
    await producer.flush()

    consumed = await read_records(await consumer_factory(topic), len(cases))
    for (value, reason), message in zip(cases, consumed, strict=True):
        assert message.value == value
        with pytest.raises(DecodeError) as info:
            codec.decode(message.value, Post, context={"max_text_bytes": limit})
        assert info.value.reason == reason
