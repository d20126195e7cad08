"""The stage protocol: what every business stage (classify, adjudicate, feedback, batch) implements.

Transport-neutral on purpose: a stage takes raw records (:class:`pipeline.intake.RawRecord`, no client
types) and returns the records to publish by topic role. The Kafka loop (:mod:`pipeline.kafka.stream`)
runs stages over a consumer group; the batch runner runs the same stages over files. Neither the stages
nor this module import a Kafka client, so reading a file in batch mode never loads one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pipeline import codec
from pipeline.intake import RawRecord
from pipeline.records import DEAD_LETTER_KEY_BYTES, DeadLetter, Record

Wait = Callable[[float], Awaitable[None]]
"""``await wait(seconds)``: back off while a dependency is down (the runner pauses its source meanwhile)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to publish: the topic role (a key of ``TopicNames.all()``), the key and encoded value,
    the record itself so the stage can account for it once it is acknowledged, and the consumed record it
    answers (``source``; none when it answers no single record).

    A transport that cannot publish an output for a reason no retry can fix (the producer or the broker refuses
    it: too large, invalid) publishes a dead letter of ``source`` instead, and hands that to ``published``."""

    role: str
    key: bytes | None
    value: bytes
    record: Record
    source: RawRecord | None = None


def dead_letter(letter: DeadLetter, source: RawRecord | None) -> Outgoing:
    """The output for a dead letter about ``source``, keyed by its key cut to ``DEAD_LETTER_KEY_BYTES`` (a key
    can be as large as a value, and the dead letter must stay small)."""
    key = source.key[:DEAD_LETTER_KEY_BYTES] if source is not None and source.key is not None else None
    return Outgoing("dead_letter", key, codec.encode(letter), letter, source)


class BatchProcessor(ABC):
    """A stage: one batch of raw records in, the records to publish out."""

    @abstractmethod
    async def process(self, records: Sequence[RawRecord], wait: Wait) -> Sequence[Outgoing]:
        """The outputs of one batch; call ``await wait(seconds)`` to back off while a dependency is down."""

    @abstractmethod
    def published(self, outputs: Sequence[Outgoing]) -> None:
        """Called once ``outputs`` are acknowledged (and, on a stream, the batch committed): metrics. An output the
        transport had to replace is handed over as the dead letter published in its place."""
