"""Consecutive windows over a time-ordered history. Pure."""

from __future__ import annotations

from pipeline.errors import ConfigError


def split_windows(n: int, *, start: int = 0, rounds: int | None = None, size: int | None = None) -> list[range]:
    """Posts ``start..n`` as consecutive windows: ``rounds`` windows of (nearly) equal size, or windows of ``size``
    posts (the last may be shorter). Neither given: one window. Every post is in exactly one window, in order."""
    if rounds is not None and size is not None:
        raise ConfigError("give the windows as --rounds or as --window-size, not both")
    if not 0 <= start <= n:
        raise ConfigError(f"the labelled seed ({start} posts) is larger than the history ({n} posts): use a smaller "
                          "--seed-labels")
    total = n - start
    if total == 0:
        return []
    if size is not None:
        if size < 1:
            raise ConfigError(f"--window-size {size} must be at least 1")
        return [range(s, min(s + size, n)) for s in range(start, n, size)]
    count = rounds if rounds is not None else 1
    if count < 1:
        raise ConfigError(f"--rounds {count} must be at least 1")
    if count > total:
        raise ConfigError(f"{count} rounds over {total} posts leaves empty windows: use at most --rounds {total}")
    bounds = [start + total * i // count for i in range(count + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(count)]
