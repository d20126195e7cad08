"""The score cache: exact repeats of a post reuse the small model's scores instead of a model call.

Spam waves post the same text thousands of times; each repeat inside the window costs a dictionary
lookup instead of a model call. The key is a digest of the *normalized* text (Unicode NFKC, runs of
whitespace collapsed, ends stripped; case is kept because the model sees it) together with the model
version and the policy version, so a new model or a policy edit never reuses stale scores. Memory is
bounded: at most ``max_entries`` entries, least recently used evicted first, each valid ``ttl_s``.
"""

from __future__ import annotations

import hashlib
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

CacheKey = bytes
CachedScores = Mapping[str, float]


def normalize_text(text: str) -> str:
    """What counts as "the same post": NFKC, whitespace runs collapsed to one space, ends stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def cache_key(text: str, model_version: str, policy_version: str) -> CacheKey:
    material = f"{model_version}\x1f{policy_version}\x1f{normalize_text(text)}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(material, digest_size=16).digest()


def cache_keys(texts: Iterable[str], model_version: str, policy_version: str) -> list[CacheKey]:
    """:func:`cache_key` of each text, the versions read once (a batch's keys)."""
    prefix = f"{model_version}\x1f{policy_version}\x1f"
    return [hashlib.blake2b((prefix + normalize_text(text)).encode("utf-8", "surrogatepass"), digest_size=16).digest()
            for text in texts]


class ScoreCache:
    """Bounded LRU of scores with a time-to-live. ``max_entries=0`` disables it (every lookup misses)."""

    def __init__(self, max_entries: int, ttl_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 0 or ttl_s <= 0:
            raise ValueError("max_entries must be >= 0 and ttl_s > 0")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[CacheKey, tuple[float, CachedScores]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> CachedScores | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, scores = entry
        if expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return scores

    def put(self, key: CacheKey, scores: CachedScores) -> None:
        """Store ``scores`` (shared, not copied: cached scores are never mutated)."""
        if self.max_entries == 0:
            return
        self._entries[key] = (self._clock() + self.ttl_s, scores)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
