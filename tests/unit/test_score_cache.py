"""The score cache: what counts as a repeat, what invalidates it, and that it stays bounded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.cascade.cache import ScoreCache, cache_key, cache_keys, normalize_text

SCORES = {"safe": 0.9, "spam": 0.1}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_whitespace_and_unicode_forms_are_the_same_post() -> None:
    assert normalize_text("  WIN  a\tfree\n iPhone ") == "WIN a free iPhone"
    assert cache_key("\uff57\uff49\uff4e now", "m1", "p1") == cache_key("win  now", "m1", "p1")  # NFKC folds full-width


def test_case_is_kept_because_the_model_sees_it() -> None:
    assert cache_key("WIN NOW", "m1", "p1") != cache_key("win now", "m1", "p1")


def test_a_new_model_or_policy_version_never_reuses_scores() -> None:
    keys = {cache_key("same text", m, p) for m in ("m1", "m2") for p in ("p1", "p2")}
    assert len(keys) == 4


def test_entries_expire_after_the_window() -> None:
    clock = Clock()
    cache = ScoreCache(10, ttl_s=60, clock=clock)
    key = cache_key("spam wave", "m1", "p1")
    cache.put(key, SCORES)
    clock.now = 59.9
    assert cache.get(key) == SCORES
    clock.now = 60.0
    assert cache.get(key) is None
    assert len(cache) == 0


def test_memory_is_bounded_least_recently_used_goes_first() -> None:
    cache = ScoreCache(2, ttl_s=60)
    a, b, c = (cache_key(t, "m1", "p1") for t in "abc")
    cache.put(a, SCORES)
    cache.put(b, SCORES)
    assert cache.get(a) is not None  # a is now the most recently used
    cache.put(c, SCORES)
    assert len(cache) == 2
    assert cache.get(b) is None
    assert cache.get(a) is not None and cache.get(c) is not None


def test_size_zero_disables_the_cache() -> None:
    cache = ScoreCache(0, ttl_s=60)
    key = cache_key("x", "m1", "p1")
    cache.put(key, SCORES)
    assert cache.get(key) is None and len(cache) == 0


@given(st.lists(st.text(max_size=40), max_size=20), st.text(max_size=8), st.text(max_size=8))
def test_a_batchs_keys_are_each_texts_key(texts: list[str], model_version: str, policy_version: str) -> None:
    assert cache_keys(texts, model_version, policy_version) == [cache_key(t, model_version, policy_version)
                                                                for t in texts]
