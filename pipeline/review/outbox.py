"""Publishing decisions: the outbox rows a decision committed are sent to Kafka, then marked sent.

At-least-once: a crash after the send and before the mark re-sends the rows on restart. Consumers de-duplicate
(verdicts by ``verdict_id``, which a re-sent human verdict repeats; labels by post id in the dataset). A broker
that is down delays publishing but loses nothing and does not stop the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pipeline.records import utcnow
from pipeline.review.store import ReviewStore

log = logging.getLogger(__name__)


async def drain_outbox(store: ReviewStore, producer: AIOKafkaProducer, topics: Mapping[str, str],
                       stop: asyncio.Event, wake: asyncio.Event, *, poll_s: float = 1.0,
                       retry_s: float = 2.0) -> None:
    """Send pending outbox rows until ``stop``; ``wake`` (set after each decision) cuts the wait short."""
    while not stop.is_set():
        wake.clear()
        pending = await asyncio.to_thread(store.pending)
        if not pending:
            await _sleep(stop, wake, poll_s)
            continue
        try:
            sends = [await producer.send(topics[r.role], r.value, key=r.key) for r in pending]
            await asyncio.gather(*sends)
        except KafkaError as exc:
            log.warning("publishing %d review records failed (%s); retrying in %.0f s", len(pending), exc, retry_s)
            await _sleep(stop, None, retry_s)
            continue
        await asyncio.to_thread(store.mark_sent, [r.id for r in pending], utcnow())
        log.info("published %d review records", len(pending))


async def _sleep(stop: asyncio.Event, wake: asyncio.Event | None, seconds: float) -> None:
    waits = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waits.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        for w in waits:
            with contextlib.suppress(asyncio.CancelledError):
                await w
