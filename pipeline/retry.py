"""Jittered exponential backoff, the one retry schedule every adapter uses.

Jitter keeps many workers that lost the same dependency at the same moment from retrying in lockstep
when it comes back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """The n-th wait (from 0) is ``min(max_s, base_s * 2**n)`` times a jitter in [0.5, 1]."""

    base_s: float = 0.2
    max_s: float = 5.0

    def delay(self, retry: int) -> float:
        return float(min(self.max_s, self.base_s * 2 ** min(retry, 62)) * random.uniform(0.5, 1.0))


@dataclass(frozen=True, slots=True)
class RetryPolicy(Backoff):
    """A bounded :class:`Backoff`: ``retries`` attempts after the first. Defaults: 4 retries, 0.2 s base,
    5 s cap (worst case ~7 s of waiting plus the timeouts)."""

    retries: int = 4
