"""The ``control`` topic: the action guards' state (GuardState records, compacted, keyed ``policy/category``).

    GuardFollower   every classify worker: reads the whole topic into a GuardBoard before its first batch
                    (:meth:`GuardFollower.open`), then follows it beside the stream loop (:meth:`GuardFollower.follow`,
                    a background task), and keeps the ``modcascade_guard_tripped`` gauge
    read_guards     the latest state of every guard now (``modcascade guard status``)
    publish_guards  send GuardState records and await their acknowledgements (``modcascade guard clear``)

The follower reads with no consumer group (a :class:`~pipeline.kafka.readback.TopicReader`), so every worker sees
every record, and a worker that starts later rebuilds the state from the compacted topic. A record that does not
decode is logged and skipped: a bad control record must not stop the classification of posts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from pipeline import codec
from pipeline.errors import DecodeError
from pipeline.kafka.clients import make_producer, start_client
from pipeline.kafka.readback import Message, TopicReader
from pipeline.metrics import Metrics
from pipeline.policy.guard import GuardBoard
from pipeline.records import GuardState, utcnow
from pipeline.settings import Settings

log = logging.getLogger(__name__)


class GuardFollower:
    """Keeps ``board`` equal to the ``control`` topic. :meth:`open` reads the topic to its end; :meth:`follow`
    (``await follower.follow(done)``, a ``run_stream`` background task) applies what is published later, polling
    every ``poll_s``; :meth:`close` stops the consumer."""

    def __init__(self, settings: Settings, board: GuardBoard, *, metrics: Metrics | None = None, poll_s: float = 0.5,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings, self.board, self.metrics = settings, board, metrics
        self.poll_s, self.clock = poll_s, clock
        self.topic = settings.topics.all()["control"]
        self._stack = contextlib.AsyncExitStack()
        self._reader: TopicReader | None = None
        self._shown: set[tuple[str, str]] = set()  # gauge series set so far

    async def open(self) -> None:
        """Start reading and apply everything the topic holds now."""
        self._reader = await self._stack.enter_async_context(
            TopicReader.open(self.settings, [self.topic], client="control topic reader"))
        self._apply(await self._reader.read_to_end())
        self._reader.messages.clear()
        tripped = [s.key for s in self.board.states() if s.in_force(self.clock())]
        log.info("control topic %s read: %d guards known, tripped: %s", self.topic, len(self.board),
                 ", ".join(tripped) or "none")

    async def follow(self, done: asyncio.Event) -> None:
        """Apply new records until ``done`` is set."""
        reader = self._reader
        if reader is None:
            raise RuntimeError("GuardFollower.open() first")
        while not done.is_set():
            self._apply(await reader.fetch(self.poll_s))
            reader.messages.clear()
            self._show()

    async def close(self) -> None:
        await self._stack.aclose()

    def _apply(self, messages: Sequence[Message]) -> None:
        for message in messages:
            if message.value is None:
                if message.key is not None:
                    self.board.remove(message.key.decode("utf-8", "replace"))
                continue
            try:
                state = codec.decode(message.value, GuardState)
            except DecodeError as exc:
                log.warning("skipping a control record that is not a GuardState (%s[%d] at offset %d): %s",
                            message.topic, message.partition, message.offset, exc)
                continue
            self.board.apply(state)
            verb = "tripped" if state.tripped else "cleared"
            log.warning("action guard %s %s by %s: %s", state.key, verb, state.by, state.reason or "-")
        if messages:
            self._show()

    def _show(self) -> None:
        """Set the guard gauge: 1 for each guard in force now, 0 for one cleared or expired."""
        if self.metrics is None:
            return
        now = self.clock()
        for state in self.board.states():
            self.metrics.guard_tripped.labels(state.policy, state.category).set(1 if state.in_force(now) else 0)
            self._shown.add((state.policy, state.category))
        known = {(s.policy, s.category) for s in self.board.states()}
        for series in self._shown - known:  # removed by a tombstone
            self.metrics.guard_tripped.labels(*series).set(0)


async def read_guards(settings: Settings) -> list[GuardState]:
    """The latest state of every guard on the ``control`` topic now."""
    board = GuardBoard()
    follower = GuardFollower(settings, board)
    try:
        await follower.open()
    finally:
        await follower.close()
    return board.states()


async def publish_guards(settings: Settings, states: Sequence[GuardState]) -> None:
    """Publish ``states`` on the ``control`` topic (keyed ``policy/category``) and await every acknowledgement."""
    if not states:
        return
    topic = settings.topics.all()["control"]
    producer = make_producer(settings)
    await start_client(producer, settings, "control topic producer")
    try:
        sends = [await producer.send(topic, codec.encode(state), key=state.key.encode()) for state in states]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
