"""Small helpers for broker tests: unique names, the factory fixtures' types, bounded reads."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any, Protocol, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from pipeline.settings import Settings


class TopicFactory(Protocol):
    async def __call__(self, prefix: str = "test", *, partitions: int = 1,
                       config: Mapping[str, str] | None = None) -> str: ...


class ProducerFactory(Protocol):
    async def __call__(self, **overrides: Any) -> AIOKafkaProducer: ...


class ConsumerFactory(Protocol):
    async def __call__(self, *topics: str, group_id: str | None = None, **overrides: Any) -> AIOKafkaConsumer: ...


def fast_group(settings: Settings) -> dict[str, Any]:
    """Consumer options for quick group joins and leaves in tests.

    tansu delays a member's first join by about half its session timeout, and a member joining a group
    whose members all left waits about two session timeouts (at 6 s: 3 s and 11 s), so on the embedded
    broker the session is short. Kafka rejects sessions below group.min.session.timeout.ms (6 s by default).
    """
    session_ms = 2000 if settings.uses_embedded_broker else 6000
    return {"session_timeout_ms": session_ms, "heartbeat_interval_ms": 200, "rebalance_timeout_ms": 5000}


def unique(prefix: str) -> str:
    """A name no other test (or earlier run against the same Kafka) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


Record: TypeAlias = ConsumerRecord[bytes, bytes]


async def read_records(consumer: AIOKafkaConsumer, count: int, timeout_s: float = 15.0) -> list[Record]:
    """Read exactly ``count`` records (fails after ``timeout_s``), in partition order."""
    records: list[Record] = []
    async with asyncio.timeout(timeout_s):
        while len(records) < count:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    assert len(records) == count, f"expected {count} records, got {len(records)}"
    return records
