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

from pipeline.intake import RawRecord
from pipeline.records import Record

Wait = Callable[[float], Awaitable[None]]
"""``await wait(seconds)``: back off while a dependency is down (the runner pauses its source meanwhile)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to publish: the topic role (a key of ``TopicNames.all()``), the key and encoded value,
    and the record itself so the stage can account for it once it is acknowledged."""

    role: str
    key: bytes | None
    value: bytes
    record: Record


class BatchProcessor(ABC):
    """A stage: one batch of raw records in, the records to publish out."""

    @abstractmethod
    async def process(self, records: Sequence[RawRecord], wait: Wait) -> Sequence[Outgoing]:
        """The outputs of one batch; call ``await wait(seconds)`` to back off while a dependency is down."""

    @abstractmethod
    def published(self, outputs: Sequence[Outgoing]) -> None:
        """Called once ``outputs`` are acknowledged (and, on a stream, the batch committed): metrics."""
