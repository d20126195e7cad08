"""The stage protocol: what every business stage (classify, adjudicate, feedback, batch) implements.

Transport-neutral on purpose: a stage takes raw records (:class:`pipeline.intake.RawRecord`, no client
types) and returns the records to publish by topic role. The Kafka loop (:mod:`pipeline.kafka.stream`)
runs stages over a consumer group; the batch runner runs the same stages over files. Neither the stages
nor this module import a Kafka client, so reading a file in batch mode never loads one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from pipeline import codec
from pipeline.intake import RawRecord
from pipeline.records import DEAD_LETTER_KEY_BYTES, DeadLetter, Record

Wait = Callable[[float], Awaitable[None]]
"""``await wait(seconds)``: back off while a dependency is down (the runner pauses its source meanwhile)."""


class Outgoing(NamedTuple):
    """One record to publish: the topic role (a key of ``TopicNames.all()``), the key and encoded value,
    the record itself so the stage can account for it once it is acknowledged, and the consumed record it
    answers (``source``; none when it answers no single record).

    A transport that cannot publish an output for a reason no retry can fix (the producer or the broker refuses
    it: too large, invalid) publishes a dead letter of ``source`` instead, and hands that to ``published``.

    A named tuple, not a frozen dataclass: the stages build one per post, and a tuple is built at a third of the
    cost (0.28 instead of 0.75 µs)."""

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


@dataclass(frozen=True, slots=True)
class Assignment:
    """What a rebalance left this worker: the partitions of its source topic it holds, out of the topic's ``total``,
    and, for a stage with a ``state_role``, the latest value of every key on that (compacted) topic."""

    topic: str
    partitions: frozenset[int]
    total: int
    state: Mapping[bytes, bytes] = field(default_factory=dict)

    @property
    def share(self) -> float:
        """The share of the source topic's partitions held: 0 with none."""
        return len(self.partitions) / self.total if self.total else 0.0


class BatchProcessor(ABC):
    """A stage: one batch of raw records in, the records to publish out."""

    state_role: ClassVar[str | None] = None
    """A compacted topic role where the stage keeps state per source partition; a transport that runs the stage over
    a consumer group reads it after every rebalance and hands the latest values to :meth:`assigned`."""

    def assigned(self, assignment: Assignment) -> None:
        """Called by a transport that spreads the source over several workers (a consumer group), after every
        rebalance and before the next batch: what this worker now holds. Stages that keep per-partition limits
        (the adjudication budget) recompute them here; the default does nothing. A transport that runs a stage
        alone (the batch command) never calls it."""
        del assignment  # nothing to recompute by default

    @abstractmethod
    async def process(self, records: Sequence[RawRecord], wait: Wait) -> Sequence[Outgoing]:
        """The outputs of one batch; call ``await wait(seconds)`` to back off while a dependency is down."""

    @abstractmethod
    def published(self, outputs: Sequence[Outgoing]) -> None:
        """Called once ``outputs`` are acknowledged (and, on a stream, the batch committed): metrics. An output the
        transport had to replace is handed over as the dead letter published in its place."""
