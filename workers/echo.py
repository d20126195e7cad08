"""The echo worker: the Foundation stage's trivial path through the broker.

consume ``posts`` → intake (Post or DeadLetter) → publish dead letters → await the acks → commit.
It proves the plumbing the classify worker stands on: decoding in one place, bad input dead-lettered
with its reason, offsets committed only after what we produced is acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline import codec
from pipeline.intake import RawRecord, read_post
from pipeline.records import DeadLetter, Post

STAGE = "echo.intake"


@dataclass
class EchoReport:
    posts: list[Post] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return len(self.posts) + len(self.dead_letters)

    def reasons(self) -> Counter[str]:
        return Counter(d.reason for d in self.dead_letters)


async def echo(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    *,
    dead_letter_topic: str,
    max_text_bytes: int,
    expected: int,
    idle_timeout_s: float = 10.0,
) -> EchoReport:
    """Read until ``expected`` records were handled or nothing arrived for ``idle_timeout_s``."""
    report = EchoReport()
    started = time.perf_counter()
    idle_since = time.monotonic()
    while report.total < expected and time.monotonic() - idle_since < idle_timeout_s:
        batches = await consumer.getmany(timeout_ms=200, max_records=500)
        if not batches:
            continue
        idle_since = time.monotonic()
        sends = []
        for records in batches.values():
            for msg in records:
                raw = RawRecord(msg.value, msg.key, msg.topic, msg.partition, msg.offset)
                out = read_post(raw, stage=STAGE, max_text_bytes=max_text_bytes)
                if isinstance(out, Post):
                    report.posts.append(out)
                else:
                    report.dead_letters.append(out)
                    sends.append(await producer.send(dead_letter_topic, codec.encode(out), key=msg.key))
        await asyncio.gather(*sends)  # every dead letter acknowledged before the offsets move
        await consumer.commit()
    report.seconds = time.perf_counter() - started
    return report
