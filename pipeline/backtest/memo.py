"""A classifier that remembers each text's scores, so a second policy replayed over the same posts (``--compare``)
costs no second pass through the model: the scores are the model's, the decisions the second policy's."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.backends import Classifier
from pipeline.backends.base import Scores


class MemoClassifier:
    def __init__(self, inner: Classifier) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.model_name = inner.model_name
        self.model_version = inner.model_version
        self.labels = inner.labels
        self._scores: dict[str, Scores] = {}
        self.sent = 0
        """Texts sent to the inner classifier."""

    async def classify(self, texts: Sequence[str]) -> list[Scores]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._scores))
        if missing:
            self.sent += len(missing)
            for text, scores in zip(missing, await self.inner.classify(missing), strict=True):
                self._scores[text] = scores
        return [dict(self._scores[t]) for t in texts]

    async def check(self) -> None:
        await self.inner.check()

    async def aclose(self) -> None:
        await self.inner.aclose()
