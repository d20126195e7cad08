"""Intake: one raw Kafka record in, a Post or a DeadLetter out. Failures are data, not exceptions.

This is the first step of every worker that reads ``posts``: it never raises for bad input, so a
malformed record cannot stop the stream; the caller publishes the DeadLetter and moves on. A record of
any size ends somewhere: one over ``max_post_bytes`` is dead-lettered before it is parsed, and a dead letter
keeps at most ``dead_letter_max_bytes`` of it (with its size and SHA-256).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from pipeline import codec
from pipeline.errors import DecodeError
from pipeline.records import DEAD_LETTER_MAX_BYTES, DeadLetter, Post


class RawRecord(NamedTuple):
    """The parts of a consumed Kafka record that intake needs (decoupled from aiokafka's type). A named tuple: one is
    built per consumed record, at a third of a frozen dataclass's cost."""

    value: bytes | None
    key: bytes | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    timestamp_ms: int | None = None
    """The broker's record timestamp (producer create time): when the post entered the pipeline."""


def read_post(raw: RawRecord, *, stage: str, max_text_bytes: int, max_post_bytes: int | None = None,
              dead_letter_max_bytes: int = DEAD_LETTER_MAX_BYTES) -> Post | DeadLetter:
    """Decode a post, or describe why it cannot be processed (with its original bytes, bounded).

    ``max_post_bytes`` bounds the whole record (text, ``meta`` and all), so the records that carry a post on
    (adjudication requests) stay within what the producer accepts; ``max_text_bytes`` bounds the text."""
    value = raw.value if raw.value is not None else b""
    try:
        if raw.value is None:
            raise DecodeError("null_value", "record has no value (tombstone)")
        if max_post_bytes is not None and len(value) > max_post_bytes:
            raise DecodeError("too_large", f"the record is {len(value)} bytes, more than {max_post_bytes} (setting "
                              "MODCASCADE_MAX_POST_BYTES)")
        return codec.decode(value, Post, context={"max_text_bytes": max_text_bytes})
    except DecodeError as exc:
        return DeadLetter.of(
            value, stage=stage, error=exc, reason=exc.reason, key=raw.key,
            topic=raw.topic, partition=raw.partition, offset=raw.offset, max_original_bytes=dead_letter_max_bytes,
        )


def read_posts(raws: Sequence[RawRecord], *, stage: str, max_text_bytes: int, max_post_bytes: int | None = None,
               dead_letter_max_bytes: int = DEAD_LETTER_MAX_BYTES) -> list[Post | DeadLetter]:
    """:func:`read_post` of each record, in order: a batch's posts decoded with the limits read once (the classify
    stage's intake; a record that fails goes through :func:`read_post` again for its dead letter)."""
    context = {"max_text_bytes": max_text_bytes}
    items: list[Post | DeadLetter] = []
    for raw in raws:
        value = raw.value
        if value is not None and (max_post_bytes is None or len(value) <= max_post_bytes):
            try:
                items.append(codec.decode(value, Post, context=context))
                continue
            except DecodeError:
                pass
        items.append(read_post(raw, stage=stage, max_text_bytes=max_text_bytes, max_post_bytes=max_post_bytes,
                               dead_letter_max_bytes=dead_letter_max_bytes))
    return items
