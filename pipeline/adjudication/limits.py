"""Limits on frontier escalation: a token bucket, a circuit breaker and an hourly spend budget.

All three are pure and synchronous (only :meth:`TokenBucket.take` awaits) and read time from an injected
``clock`` (``time.monotonic`` by default), so tests drive them with a fake clock instead of sleeping.
None of them is thread-safe; they are meant for one asyncio event loop.

- :class:`TokenBucket` smooths the request *rate* (the provider's requests-per-second limit).
- :class:`CircuitBreaker` stops calling a provider that keeps failing, then probes it with one trial call.
- :class:`EscalationBudget` caps requests and dollars per sliding hour, so a flood of borderline posts
  cannot run up an unbounded bill.
- :class:`PartitionedBudget` holds the same caps across replicas: split over the source topic's partitions, the
  spend booked per partition and handed on with it (docs/adjudication.md, "Several replicas").
- :class:`AdjudicationLimits` is the configuration of all of them for the adjudication stage.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pipeline.retry import Backoff

Clock = Callable[[], float]
BreakerState = Literal["closed", "open", "half_open"]

WINDOW_S = 3600.0
"""Length of the :class:`EscalationBudget` window: an entry counts for this many seconds after it is booked."""

# Float rounding can leave a bucket a hair short of ``n`` right when try_take said it would be full;
# without this slack take() would spin on sleeps of a few nanoseconds.
_TOKEN_SLACK = 1e-9


class TokenBucket:
    """Rate limit: ``rate_per_s`` tokens per second, at most ``burst`` stored (starts full).

    Taking more than ``burst`` tokens at once, or a negative number, is a bug and raises ValueError
    (it could never succeed, so waiting for it would hang).
    """

    def __init__(self, rate_per_s: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        if not rate_per_s > 0:  # written so that NaN is rejected too
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    @property
    def tokens(self) -> float:
        """Tokens available now."""
        self._refill()
        return self._tokens

    def try_take(self, n: float = 1.0) -> float:
        """Take ``n`` tokens if available and return 0.0; else take nothing and return the seconds until
        they will be."""
        if not 0 <= n <= self.burst:
            raise ValueError(f"n must be between 0 and burst ({self.burst}), got {n!r}")
        self._refill()
        if self._tokens + _TOKEN_SLACK >= n:
            self._tokens = max(0.0, self._tokens - n)
            return 0.0
        return (n - self._tokens) / self.rate_per_s

    async def take(self, n: float = 1.0) -> None:
        """Wait (asyncio.sleep) until ``n`` tokens can be taken, then take them."""
        while (wait := self.try_take(n)) > 0:
            # Loop rather than trust one sleep: another task may take the tokens first.
            await asyncio.sleep(wait)

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)  # a clock that steps back must not drain the bucket
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_per_s)
        self._updated = now


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures; while open, ``allow()`` is False until
    ``reset_after_s`` passed, then half-open lets ONE trial call through (further allow() calls are False
    until it reports); a success closes it, a failure re-opens it (for reset_after_s again).

    The move from open to half-open happens in the ``allow()`` call that lets the trial through, so
    ``state`` is "half_open" exactly while a trial is in flight. Reports that arrive while open come
    from calls started before it opened and are ignored. ``on_change``, if set, is called with the new
    state on every transition (for metrics and logs).
    """

    def __init__(self, failure_threshold: int, reset_after_s: float, *, clock: Clock = time.monotonic) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold!r}")
        if not reset_after_s > 0:
            raise ValueError(f"reset_after_s must be > 0, got {reset_after_s!r}")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self.on_change: Callable[[BreakerState], None] | None = None
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._trial_at = 0.0  # when an open breaker lets its trial through

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> bool:
        """Whether the caller may make a call now; in the open state, True once: that call is the trial."""
        if self._state == "closed":
            return True
        if self._state == "open" and self.seconds_until_trial() == 0.0:
            self._move("half_open")
            return True
        return False

    def record_success(self) -> None:
        """A call let through by ``allow()`` succeeded."""
        if self._state == "open":
            return
        self._failures = 0
        if self._state == "half_open":
            self._move("closed")

    def record_failure(self) -> None:
        """A call let through by ``allow()`` failed."""
        if self._state == "open":
            return
        self._failures += 1
        if self._state == "half_open" or self._failures >= self.failure_threshold:
            self._trial_at = self._clock() + self.reset_after_s
            self._move("open")

    def seconds_until_trial(self) -> float:
        """0 unless open; while open, the seconds until ``allow()`` lets a trial through."""
        if self._state != "open":
            return 0.0
        return max(0.0, self._trial_at - self._clock())

    def _move(self, state: BreakerState) -> None:
        self._state = state
        if state != "open":
            self._failures = 0
        if self.on_change is not None:
            self.on_change(state)


class EscalationBudget:
    """Sliding one-hour window of frontier spend: at most ``max_requests_per_hour`` requests and
    ``max_usd_per_hour`` dollars (None = unlimited). ``allows(est_usd)`` says whether one more request,
    estimated at ``est_usd``, fits; ``record(usd)`` books a request's real cost (call it once per request
    actually sent, with its real cost; 0.0 if unknown). Entries older than 3600 s drop out.

    An entry booked at ``t`` counts while ``now < t + 3600``. A real cost above the estimate may push
    the window over the dollar cap; ``allows`` then stays False until enough ages out.
    """

    def __init__(
        self, max_requests_per_hour: int | None, max_usd_per_hour: float | None, *, clock: Clock = time.monotonic
    ) -> None:
        if max_requests_per_hour is not None and max_requests_per_hour < 0:
            raise ValueError(f"max_requests_per_hour must be >= 0 or None, got {max_requests_per_hour!r}")
        if max_usd_per_hour is not None and not max_usd_per_hour >= 0:
            raise ValueError(f"max_usd_per_hour must be >= 0 or None, got {max_usd_per_hour!r}")
        self.max_requests_per_hour = max_requests_per_hour
        self.max_usd_per_hour = max_usd_per_hour
        self._clock = clock
        # (expires at, usd), oldest first. Storing the expiry rather than the booking time makes
        # seconds_until_room() exact: sleeping that long lands on the expiry, not a rounding error short.
        self._entries: deque[tuple[float, float]] = deque()
        self._usd = 0.0

    @property
    def requests_in_window(self) -> int:
        self._expire()
        return len(self._entries)

    @property
    def usd_in_window(self) -> float:
        self._expire()
        return self._usd

    def allows(self, est_usd: float) -> bool:
        """Whether one more request, estimated at ``est_usd`` dollars, fits in both caps now."""
        _check_usd("est_usd", est_usd)
        self._expire()
        return self._fits(len(self._entries), self._usd, est_usd)

    def record(self, usd: float) -> None:
        """Book one request actually sent, at its real cost ``usd`` (0.0 if unknown)."""
        _check_usd("usd", usd)
        self._expire()
        self._entries.append((self._clock() + WINDOW_S, usd))
        self._usd += usd

    def seconds_until_room(self, est_usd: float) -> float:
        """0 if allows(est_usd); else when the oldest entries age out enough (inf if est_usd alone
        exceeds max_usd_per_hour, or max_requests_per_hour is 0). Assumes nothing more is recorded."""
        if self.allows(est_usd):
            return 0.0
        if self.max_requests_per_hour == 0 or (self.max_usd_per_hour is not None and est_usd > self.max_usd_per_hour):
            return math.inf
        # Replay the expiry arithmetic of _expire() so the answer agrees with allows() at that moment.
        count, usd = len(self._entries), self._usd
        for expires, cost in self._entries:
            count -= 1
            usd = usd - cost if count else 0.0
            if self._fits(count, usd, est_usd):
                return max(0.0, expires - self._clock())
        raise AssertionError("unreachable: an empty window fits any request that passed the checks above")

    def _fits(self, count: int, usd: float, est_usd: float) -> bool:
        if self.max_requests_per_hour is not None and count >= self.max_requests_per_hour:
            return False
        return self.max_usd_per_hour is None or usd + est_usd <= self.max_usd_per_hour

    def _expire(self) -> None:
        now = self._clock()
        while self._entries and self._entries[0][0] <= now:
            self._usd -= self._entries.popleft()[1]
        if not self._entries:
            self._usd = 0.0  # drop the rounding residue of the subtractions


def _check_usd(name: str, usd: float) -> None:
    if not (usd >= 0 and math.isfinite(usd)):
        raise ValueError(f"{name} must be a finite number of dollars >= 0, got {usd!r}")


@dataclass(frozen=True, slots=True)
class AdjudicationLimits:
    """How the adjudication stage calls the frontier: concurrency, rate, retries, breaker, backoff."""

    concurrency: int = 8
    rate_per_s: float = 5.0
    burst: int = 10
    max_attempts: int = 4
    """Calls per request, transient errors and unusable answers together."""
    breaker_failures: int = 5
    breaker_reset_s: float = 30.0
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=1.0, max_s=30.0))
    max_hold_s: float = 60.0
    """Longest single pause while holding (budget spent or breaker open, ``fallback: hold``)."""


LEDGER_BUCKET_S = 60.0
"""A :class:`PartitionedBudget` books spend in buckets of this many seconds (its ledger stays small: at most
``WINDOW_S / LEDGER_BUCKET_S + 1`` entries per partition). An entry counts until the end of its bucket's hour, so
spend may age out up to this much later than in :class:`EscalationBudget`, never earlier."""

LedgerEntry = tuple[float, int, float]
"""(expires at, Unix seconds; requests; usd) booked on one partition in one bucket."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """Room held on one partition for a frontier call in flight, at its estimated cost
    (:meth:`PartitionedBudget.reserve`)."""

    partition: int
    est_usd: float


class PartitionedBudget:
    """The hourly caps of an :class:`EscalationBudget`, split over the partitions of the source topic so that any
    number of replicas together spend no more than the caps (docs/adjudication.md, "Several replicas").

    Each partition ``p`` of ``total`` has an allowance: ``max_requests_per_hour`` spread as evenly as integers go
    (they sum to the cap) and ``max_usd_per_hour / total`` dollars. A replica may spend the allowances of the
    partitions it holds (:meth:`assign`), and books each request on one of them (the one with most room left). The
    bookings of a partition travel with it: :meth:`ledger` is published beside the batch's outputs, before its
    offsets are committed, and the partition's next owner starts from it (``restored`` in :meth:`assign`), so a
    rebalance moves the spend together with the right to spend. A replica that holds no partition spends nothing.

    Same interface as :class:`EscalationBudget` (``allows``, ``record``, ``seconds_until_room``), plus reservations:
    a call reserves room before it is sent (:meth:`reserve`) and settles it at its real cost when it ends
    (:meth:`settle`), so calls in flight at once count against the caps before any of them is booked (``allows``
    counts them too). The clock is wall time (``time.time``) because bookings cross processes. Before any
    :meth:`assign` the budget is one partition, held: the whole caps, as a single process (the batch command) needs.
    """

    def __init__(self, max_requests_per_hour: int | None, max_usd_per_hour: float | None, *,
                 clock: Clock = time.time) -> None:
        if max_requests_per_hour is not None and max_requests_per_hour < 0:
            raise ValueError(f"max_requests_per_hour must be >= 0 or None, got {max_requests_per_hour!r}")
        if max_usd_per_hour is not None and not max_usd_per_hour >= 0:
            raise ValueError(f"max_usd_per_hour must be >= 0 or None, got {max_usd_per_hour!r}")
        self.max_requests_per_hour = max_requests_per_hour
        self.max_usd_per_hour = max_usd_per_hour
        self._clock = clock
        self._held: tuple[int, ...] = (0,)
        self._total = 1
        self._entries: dict[int, deque[list[float]]] = {}  # partition -> [expires, requests, usd], oldest first
        self._reserved: dict[int, tuple[int, float]] = {}  # partition -> (calls in flight, their estimated usd)
        self._dirty: set[int] = set()

    @property
    def held(self) -> tuple[int, ...]:
        return self._held

    @property
    def share(self) -> float:
        """The share of the caps this replica may spend: its partitions out of the total."""
        return len(self._held) / self._total if self._total else 0.0

    def assign(self, partitions: Iterable[int], total: int,
               restored: Mapping[int, Sequence[LedgerEntry]] | None = None) -> None:
        """After a rebalance: this replica holds ``partitions`` of ``total``; ``restored`` are the ledgers the
        partitions' previous owners published (a partition kept across the rebalance keeps its own bookings, which
        are at least as recent)."""
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total!r}")
        held = tuple(sorted(set(partitions)))
        if any(not 0 <= p < total for p in held):
            raise ValueError(f"partitions {held} are not all in 0..{total - 1}")
        kept = set(held) & set(self._held) if total == self._total else set()
        restored = restored or {}
        self._entries = {p: self._entries[p] if p in kept and p in self._entries
                         else deque([float(e), float(r), float(u)] for e, r, u in restored.get(p, ()))
                         for p in held}
        self._held, self._total = held, total
        self._dirty &= set(held)
        # A reservation on a partition given up is settled on a held one (settle), its room is not held here.
        self._reserved = {p: room for p, room in self._reserved.items() if p in held}

    def allowance(self, partition: int) -> tuple[float | None, float | None]:
        """(requests, usd) per hour that ``partition`` may spend; ``None`` is no cap."""
        requests: float | None = None
        if self.max_requests_per_hour is not None:
            base, extra = divmod(self.max_requests_per_hour, self._total) if self._total else (0, 0)
            requests = base + (1 if partition < extra else 0)
        usd: float | None = None
        if self.max_usd_per_hour is not None:
            usd = self.max_usd_per_hour / self._total if self._total else 0.0
        return requests, usd

    def spent(self, partition: int) -> tuple[int, float]:
        """(requests, usd) booked on ``partition`` in the window."""
        entries = self._expire(partition)
        return int(sum(e[1] for e in entries)), sum(e[2] for e in entries)

    @property
    def requests_in_window(self) -> int:
        return sum(self.spent(p)[0] for p in self._held)

    @property
    def usd_in_window(self) -> float:
        return sum(self.spent(p)[1] for p in self._held)

    def allows(self, est_usd: float) -> bool:
        """Whether one more request, estimated at ``est_usd``, fits the allowance of a partition held."""
        _check_usd("est_usd", est_usd)
        return self._roomiest(est_usd) is not None

    def record(self, usd: float) -> None:
        """Book one request actually sent, at its real cost, on the held partition with most room (the first one
        when none has room left: a cost above the estimate may go over, as in :class:`EscalationBudget`)."""
        _check_usd("usd", usd)
        if not self._held:
            raise RuntimeError("a replica that holds no partition cannot spend: check allows() first")
        partition = self._roomiest(0.0)
        self._book(self._held[0] if partition is None else partition, usd)

    def _book(self, partition: int, usd: float) -> None:
        entries = self._expire(partition)
        now = self._clock()
        expires = (math.floor(now / LEDGER_BUCKET_S) + 1) * LEDGER_BUCKET_S + WINDOW_S
        if entries and entries[-1][0] == expires:
            entries[-1][1] += 1
            entries[-1][2] += usd
        else:
            entries.append([expires, 1.0, usd])
        self._dirty.add(partition)

    def reserve(self, est_usd: float) -> Reservation | None:
        """Hold room for one call about to be sent, at ``est_usd``, on the held partition with most room (calls in
        flight counted); None when none has room. Every reservation ends in :meth:`settle` or :meth:`release`."""
        _check_usd("est_usd", est_usd)
        partition = self._roomiest(est_usd)
        if partition is None:
            return None
        calls, usd = self._reserved.get(partition, (0, 0.0))
        self._reserved[partition] = (calls + 1, usd + est_usd)
        return Reservation(partition, est_usd)

    def settle(self, reservation: Reservation, usd: float) -> None:
        """The reserved call was sent and cost ``usd``: book it on its partition (if this replica still holds it;
        else as :meth:`record` does) and free the reservation."""
        _check_usd("usd", usd)
        self.release(reservation)
        if reservation.partition in self._held:
            self._book(reservation.partition, usd)
        elif self._held:
            self.record(usd)

    def release(self, reservation: Reservation) -> None:
        """The reserved call was not sent (or is not to be booked): free its room."""
        calls, usd = self._reserved.get(reservation.partition, (0, 0.0))
        if calls <= 1:
            self._reserved.pop(reservation.partition, None)
        else:
            self._reserved[reservation.partition] = (calls - 1, max(0.0, usd - reservation.est_usd))

    @property
    def in_flight(self) -> int:
        """Calls reserved and not yet settled or released."""
        return sum(calls for calls, _ in self._reserved.values())

    def seconds_until_room(self, est_usd: float) -> float:
        """0 if allows(est_usd); else when bookings age out enough on some held partition (inf if none ever will).
        Assumes nothing more is booked."""
        if self.allows(est_usd):
            return 0.0
        waits = [self._wait(p, est_usd) for p in self._held]
        return min(waits, default=math.inf)

    def ledger(self, partition: int) -> list[LedgerEntry]:
        """The bookings of ``partition`` in the window, to publish for its next owner."""
        return [(e, int(r), u) for e, r, u in self._expire(partition)]

    def take_dirty(self) -> list[int]:
        """The held partitions booked on since the last call (their ledgers are due to be published)."""
        dirty, self._dirty = sorted(self._dirty & set(self._held)), set()
        return dirty

    def _fits(self, partition: int, requests: int, usd: float, est_usd: float) -> bool:
        cap_requests, cap_usd = self.allowance(partition)
        if cap_requests is not None and requests + 1 > cap_requests:
            return False
        return cap_usd is None or usd + est_usd <= cap_usd + 1e-12

    def _roomiest(self, est_usd: float) -> int | None:
        best: tuple[float, float, int] | None = None
        for p in self._held:
            requests, usd = self.spent(p)
            in_flight, reserved_usd = self._reserved.get(p, (0, 0.0))
            requests, usd = requests + in_flight, usd + reserved_usd
            if not self._fits(p, requests, usd, est_usd):
                continue
            cap_requests, cap_usd = self.allowance(p)
            room = (math.inf if cap_requests is None else cap_requests - requests,
                    math.inf if cap_usd is None else cap_usd - usd, -p)
            if best is None or room > best:
                best = room
        return None if best is None else -best[2]

    def _wait(self, partition: int, est_usd: float) -> float:
        cap_requests, cap_usd = self.allowance(partition)
        if cap_requests == 0 or (cap_usd is not None and est_usd > cap_usd):
            return math.inf
        entries = list(self._expire(partition))
        requests, usd = sum(int(e[1]) for e in entries), sum(e[2] for e in entries)
        for expires, count, cost in entries:
            requests, usd = requests - int(count), usd - cost
            if self._fits(partition, requests, usd, est_usd):
                return max(0.0, expires - self._clock())
        return math.inf

    def _expire(self, partition: int) -> deque[list[float]]:
        entries = self._entries.setdefault(partition, deque())
        now = self._clock()
        while entries and entries[0][0] <= now:
            entries.popleft()
        return entries
