"""Shared fakes for unit tests. The fake classifier is the library's own
(:class:`pipeline.backends.fake.FakeClassifier`, re-exported here); scripted frontier servers are in
:mod:`tests.support.frontier`."""

from __future__ import annotations

from pipeline.backends.fake import FakeClassifier


class FakeClock:
    """A monotonic clock that moves only when a test calls ``advance``; pass it where code takes ``clock=``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


__all__ = ["FakeClassifier", "FakeClock"]
