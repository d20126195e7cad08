"""Fixed offset ranges of a topic: where a range starts and ends, and reading it, on Kafka and on the embedded
broker (tansu 0.6.0), whose answers differ in ways checked against it:

* ListOffsets(latest) answers one past the *base* offset of a partition's last record batch, not the high
  watermark (a partition holding one batch of 7 records answers 1). So each partition is fetched once from just
  before the listed end, and the high watermark of that fetch (tansu reports it correctly) is the end. On Kafka
  both agree.
* ListOffsets(timestamp) ignores the timestamp and answers the log start. So the broker's answer for a start time
  is checked against the records around it (the record before must be older, the first one from it not older)
  and, where the check fails, the partition is scanned from its log start for the first record at or after that
  time (Kafka's own definition). On Kafka the check passes and nothing is scanned.
* A fetch that keeps coming back empty before a partition reached its end (the range's last offsets are no
  records: compacted away, transaction markers) ends that partition with a warning instead of hanging.

The consumer is assigned partitions by hand (no consumer group): :func:`resolve_range` and :class:`RangeReader`
assign and seek it as they need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from pipeline.errors import BrokerError, ConfigError
from pipeline.kafka.clients import broker_errors
from pipeline.settings import Settings

log = logging.getLogger(__name__)

Message: TypeAlias = ConsumerRecord[bytes, bytes]


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """Per partition, the first offset of the range and the end (exclusive) it had when it was resolved."""

    starts: dict[int, int]
    ends: dict[int, int]
    start: str
    """How the start was chosen, for people: ``from offset 5``, ``from 2026-01-01T00:00:00Z``, ``from the log
    start``."""


async def resolve_range(consumer: AIOKafkaConsumer, settings: Settings, topic: str, from_offset: int | None,
                        from_time: datetime | None) -> OffsetRange:
    """Every partition of ``topic`` from ``from_offset`` (clamped to the log start), or from the first record at or
    after ``from_time`` (naive = UTC), or from the log start; up to the ends it has now."""
    await consumer.topics()  # refreshes the metadata
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise ConfigError(f"topic {topic!r} does not exist on {settings.bootstrap}; check the topic name and "
                          "MODCASCADE_KAFKA_BOOTSTRAP (is it the right cluster?)")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    log_starts = {tp.partition: o for tp, o in (await consumer.beginning_offsets(tps)).items()}
    listed_ends = {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
    ends = await high_watermarks(consumer, settings, topic, log_starts, listed_ends)
    if from_time is not None:
        at = from_time.replace(tzinfo=UTC) if from_time.tzinfo is None else from_time.astimezone(UTC)
        starts = await starts_at_time(consumer, settings, topic, at, log_starts, ends)
        return OffsetRange(starts, ends, f"from {at.isoformat().replace('+00:00', 'Z')}")
    starts = {p: min(max(from_offset or 0, log_starts[p]), ends[p]) for p in ends}
    return OffsetRange(starts, ends, f"from offset {from_offset}" if from_offset is not None else "from the log start")


class RangeReader:
    """Reads partitions of one topic from ``positions`` up to (not including) ``ends``, at most ``max_records`` a
    call; ``positions`` always holds the next offset of each partition after what was returned."""

    def __init__(self, consumer: AIOKafkaConsumer, settings: Settings, topic: str, positions: dict[int, int],
                 ends: dict[int, int]) -> None:
        self._consumer = consumer
        self._topic = topic
        self.positions = dict(positions)
        self.ends = ends
        self._active = {p for p, o in positions.items() if o < ends[p]}
        # Long enough for many empty fetches in a row (each waits up to fetch_max_wait_ms): the broker's answer
        # that nothing more is there, not a slow fetch.
        self._idle_s = max(2.0, 20 * settings.kafka.fetch_max_wait_ms / 1000)
        self._silent_s = self._idle_s + settings.kafka.request_timeout_ms / 1000
        self._bootstrap = settings.bootstrap
        if self._active:
            consumer.assign([TopicPartition(topic, p) for p in sorted(self._active)])
            for p in self._active:
                consumer.seek(TopicPartition(topic, p), positions[p])

    @property
    def done(self) -> bool:
        return not self._active

    def stop(self, partition: int) -> None:
        """Read nothing more from ``partition``."""
        if partition in self._active:
            self._active.discard(partition)
            self._consumer.pause(TopicPartition(self._topic, partition))

    async def read(self, max_records: int) -> list[Message]:
        idle_since, idle_since_ms = time.monotonic(), int(time.time() * 1000)
        while self._active:
            fetched = await self._consumer.getmany(timeout_ms=200, max_records=max_records)
            out: list[Message] = []
            for tp, messages in fetched.items():
                if tp.partition not in self._active:
                    continue
                end = self.ends[tp.partition]
                out.extend(m for m in messages if m.offset < end)  # later records were produced after the open
                position = await self._consumer.position(tp)  # past control records too, not just the last record
                self.positions[tp.partition] = min(position, end)
                if position >= end:
                    self.stop(tp.partition)
            if out:
                return out
            if fetched:
                idle_since, idle_since_ms = time.monotonic(), int(time.time() * 1000)
            elif time.monotonic() - idle_since > self._idle_s:
                if self._end_idle_partitions(idle_since_ms):
                    idle_since, idle_since_ms = time.monotonic(), int(time.time() * 1000)
                elif time.monotonic() - idle_since > self._silent_s:
                    raise BrokerError(f"topic {self._topic}: {self._bootstrap} has not answered fetches for "
                                      f"partition(s) {sorted(self._active)} for {self._silent_s:.0f} s; is it "
                                      "overloaded, or the partition leader unavailable?")
        return []

    def _end_idle_partitions(self, idle_since_ms: int) -> bool:
        """End the partitions the broker answered for, without records, since ``idle_since_ms``: nothing is left
        up to their end (the offsets there are no records: compacted away, transaction markers). False if none."""
        ended = False
        for partition in sorted(self._active):
            tp = TopicPartition(self._topic, partition)
            answered = self._consumer.last_poll_timestamp(tp)
            if answered is not None and answered >= idle_since_ms:
                log.warning("topic %s partition %d: no records from offset %d up to the range end %d (high "
                            "watermark %s); the partition is done", self._topic, partition,
                            self.positions[partition], self.ends[partition], self._consumer.highwater(tp))
                self.positions[partition] = self.ends[partition]
                self.stop(partition)
                ended = True
        return ended


async def high_watermarks(consumer: AIOKafkaConsumer, settings: Settings, topic: str, log_starts: dict[int, int],
                           listed_ends: dict[int, int]) -> dict[int, int]:
    """Each partition's end, from the high watermark of a fetch (tansu under-reports ListOffsets(latest))."""
    tps = {p: TopicPartition(topic, p) for p in listed_ends}
    consumer.assign(list(tps.values()))
    for p, tp in tps.items():
        consumer.seek(tp, max(listed_ends[p] - 1, log_starts[p]))  # fetch little: the last batch at most
    ends: dict[int, int] = {}
    try:
        async with asyncio.timeout(settings.kafka.request_timeout_ms / 1000):
            while len(ends) < len(tps):
                await consumer.getmany(timeout_ms=100, max_records=1)
                for p, tp in tps.items():
                    highwater = consumer.highwater(tp)
                    if highwater is not None:
                        ends[p] = max(highwater, listed_ends[p])
    except TimeoutError as exc:
        missing = sorted(set(tps) - set(ends))
        raise BrokerError(f"topic {topic}: no fetch answer for partition(s) {missing} from {settings.bootstrap} "
                          f"within {settings.kafka.request_timeout_ms} ms; is the broker overloaded?") from exc
    return ends


async def starts_at_time(consumer: AIOKafkaConsumer, settings: Settings, topic: str, at: datetime,
                          log_starts: dict[int, int], ends: dict[int, int]) -> dict[int, int]:
    """The first offset at or after ``at`` per partition (its end when there is none): the broker's answer,
    checked against the records around it, else found by scanning (tansu ignores the timestamp)."""
    at_ms = -(-(at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1))  # ceiling: ms timestamps
    answers = await consumer.offsets_for_times({TopicPartition(topic, p): at_ms for p in ends})
    candidates = {tp.partition: min(max(a.offset, log_starts[tp.partition]), ends[tp.partition])
                  if a is not None else ends[tp.partition] for tp, a in answers.items()}
    # Check: the record before the candidate is older than ``at``, the first one from it is not.
    around = {p: max(c - 1, log_starts[p]) for p, c in candidates.items()}
    reader = RangeReader(consumer, settings, topic, around, {p: min(c + 1, ends[p]) for p, c in candidates.items()})
    seen: dict[int, list[Message]] = {p: [] for p in ends}
    while not reader.done:
        with range_errors(settings, topic):
            for message in await reader.read(2 * len(ends)):
                seen[message.partition].append(message)
    wrong = {p for p, c in candidates.items() if not _is_first_at(seen[p], c, at_ms, log_starts[p], ends[p])}
    starts = {p: c for p, c in candidates.items() if p not in wrong}
    if wrong:
        log.info("topic %s: the broker's offsets for %s are wrong for partition(s) %s; scanning for them",
                 topic, at.isoformat(), sorted(wrong))
        scan = RangeReader(consumer, settings, topic, {p: log_starts[p] for p in wrong}, ends)
        while not scan.done:
            with range_errors(settings, topic):
                for message in await scan.read(10_000):
                    if message.partition not in starts and message.timestamp >= at_ms:
                        starts[message.partition] = message.offset
                        scan.stop(message.partition)
        starts.update({p: ends[p] for p in wrong if p not in starts})
    return starts


def _is_first_at(messages: list[Message], candidate: int, at_ms: int, log_start: int, end: int) -> bool:
    before = [m for m in messages if m.offset < candidate]
    after = [m for m in messages if m.offset >= candidate]
    if before and before[-1].timestamp >= at_ms:
        return False
    if candidate < end and (not after or after[0].timestamp < at_ms):
        return False
    # A candidate at the end claims that no record is that new: then the last record must be older.
    return not (candidate == end and candidate > log_start and not before)


@contextlib.contextmanager
def range_errors(settings: Settings, topic: str) -> Iterator[None]:
    """Client errors while reading a range, as :class:`BrokerError`; records gone from under the range (retention,
    a recreated topic) say so and how to go on."""
    try:
        with broker_errors(f"reading topic {topic}", settings.bootstrap):
            yield
    except BrokerError as exc:
        if isinstance(exc.__cause__, OffsetOutOfRangeError):
            raise BrokerError(f"topic {topic}: records of the range are no longer on the broker ({exc.__cause__}): "
                              "deleted by retention before they were read, or the topic was recreated; start the "
                              "range again from a later offset or time") from exc.__cause__
        raise

