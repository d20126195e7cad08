"""``FakeClassifier``: an in-process classifier that costs nothing, for unit tests and for measuring the
pipeline's own ceiling (``make bench``). Never a production backend: the settings cannot select it.

Scores come from ``rule(text)``; the default rule is a deterministic spread derived from a hash of the
text (about 80% clearly safe, the rest split between clear hits and the band), so every route of the
cascade is exercised. ``down = True`` makes every call raise BackendUnavailable, like a stopped server.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence

from pipeline.backends.base import Scores, check_texts
from pipeline.errors import BackendUnavailable

Rule = Callable[[str], Scores]


def hashed_rule(labels: Sequence[str], safe: str) -> Rule:
    """A stable pseudo-random score spread over ``labels`` for each text (see the module docstring)."""
    harmful = [label for label in labels if label != safe]

    def rule(text: str) -> Scores:
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        bucket, pick = digest[0] % 100, harmful[digest[1] % len(harmful)]
        top = 0.97 if bucket < 80 or bucket >= 92 else 0.55  # 80% safe, 12% in a band, 8% clear hits
        winner = safe if bucket < 80 else pick
        rest = (1.0 - top) / (len(labels) - 1)
        return {label: top if label == winner else rest for label in labels}

    return rule


class FakeClassifier:
    backend = "fake"

    def __init__(
        self,
        labels: Sequence[str],
        *,
        safe: str = "safe",
        rule: Rule | None = None,
        model_name: str = "fake-classifier",
        model_version: str = "fake-1",
        latency_s: float = 0.0,
    ) -> None:
        self.labels = tuple(labels)
        self.model_name = model_name
        self.model_version = model_version
        self.rule = rule or hashed_rule(self.labels, safe)
        self.latency_s = latency_s
        self.down = False
        self.calls: list[int] = []
        """Batch size of every successful call."""

    async def classify(self, texts: Sequence[str]) -> list[Scores]:
        check_texts(texts)
        if self.down:
            raise BackendUnavailable("fake classifier is down (FakeClassifier.down = True)")
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        self.calls.append(len(texts))
        return [self.rule(text) for text in texts]

    async def check(self) -> None:
        if self.down:
            raise BackendUnavailable("fake classifier is down (FakeClassifier.down = True)")

    async def aclose(self) -> None:
        pass
