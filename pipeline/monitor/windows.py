"""Tumbling windows by record time, and when a window is closed (pure).

A window ``[start, start + size)`` is evaluated once, when it is closed: either the stream's time (the watermark,
:class:`Watermarks`) has passed its end by ``lateness``, or, for a stream that went quiet, the wall clock has passed
its end by ``lateness`` and no record arrived for ``lateness``. Records that arrive for a window after that
are still counted (a restarted monitor sees them) but the window is not evaluated again.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field


def window_start(timestamp: float, size: float) -> float:
    """Start of the tumbling window of ``size`` seconds that holds ``timestamp`` (epoch seconds); windows are
    aligned to the epoch, so every monitor (and every restart) cuts the same windows."""
    return math.floor(timestamp / size) * size


@dataclass
class Watermarks:
    """Stream time: the newest record time per input partition, and the slowest active partition's as the stream's.

    The inputs are several topics (verdicts, adjudication, dead letters) read at their own pace: when a backlog is
    replayed, one topic can be minutes ahead of another, so the newest record time overall would close windows the
    slower topic still has records for. A partition that delivered nothing for ``idle_s`` (wall time) no longer
    holds the watermark back (an empty dead-letter topic must not stop every window from closing); for ``idle_s``
    after the first record the watermark stays at 0, so every partition gets to deliver its first records.
    """

    idle_s: float
    started: float | None = None  # wall time of the first record
    times: dict[Hashable, float] = field(default_factory=dict)
    seen: dict[Hashable, float] = field(default_factory=dict)

    def advance(self, partition: Hashable, timestamp: float, now: float) -> None:
        if self.started is None:
            self.started = now
        self.times[partition] = max(timestamp, self.times.get(partition, 0.0))
        self.seen[partition] = now

    def watermark(self, now: float) -> float:
        if self.started is None or now - self.started < self.idle_s:
            return 0.0
        active = [t for p, t in self.times.items() if now - self.seen[p] < self.idle_s]
        return min(active) if active else max(self.times.values())


@dataclass(frozen=True)
class Clock:
    """What the monitor knows about time when it looks for closed windows."""

    watermark: float  # newest record time seen (0: none yet)
    wall_now: float
    last_record_wall: float  # wall time the last record arrived (or the monitor started)


def is_closed(start: float, size: float, lateness: float, clock: Clock) -> bool:
    end = start + size
    if clock.watermark >= end + lateness:
        return True
    return clock.wall_now >= end + lateness and clock.wall_now - clock.last_record_wall >= lateness


def due_windows(first: float, done: float | None, size: float, lateness: float, clock: Clock,
                limit: int = 1000) -> list[float]:
    """Starts of the windows to evaluate now, oldest first: from the one after ``done`` (or ``first``, the first
    window with records) up to the last closed one. At most ``limit``, so a monitor that was down a long time
    catches up in steps."""
    start = first if done is None else done + size
    due: list[float] = []
    while len(due) < limit and is_closed(start, size, lateness, clock):
        due.append(start)
        start += size
    return due
