"""One window's statistics from its counts, and the population stability index (pure).

The counts are those of :mod:`pipeline.monitor.tally` for one policy (``stat -> count``); a statistic that is not
there is zero. Rates are shares of the window's records: escalation rate = escalated / posts, a category's block
rate = its final blocks / final verdicts, disagreement = frontier answers that differ from the small model's top
label / frontier verdicts, dead-letter rate = dead letters / (small-model outputs + dead letters).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

PSI_FLOOR = 1e-4
"""Smallest bin share used in the PSI: an empty bin on one side would make the index infinite."""


def ratio(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


@dataclass(frozen=True)
class Summary:
    """The statistics of one policy in one window (or of several windows summed: a trailing reference)."""

    posts: int
    escalated: int
    final: int
    decisions: dict[str, int]
    blocks: dict[str, int]
    histograms: dict[str, tuple[int, ...]]
    adjudicated: int
    disagreed: int

    @property
    def escalation_rate(self) -> float:
        return ratio(self.escalated, self.posts)

    @property
    def disagreement_rate(self) -> float:
        return ratio(self.disagreed, self.adjudicated)

    def decision_mix(self) -> dict[str, float]:
        """Share of the final verdicts per decision."""
        return {decision: ratio(n, self.final) for decision, n in sorted(self.decisions.items())}

    def block_rate(self, category: str) -> float:
        return ratio(self.blocks.get(category, 0), self.final)


DECISIONS = ("allow", "block", "review")


def summarize(counts: Mapping[str, int], *, categories: Sequence[str], bins: int) -> Summary:
    """A policy's window statistics from its counts (``stat -> count``)."""
    def get(stat: str) -> int:
        return int(counts.get(stat, 0))

    return Summary(
        posts=get("posts"),
        escalated=get("escalated"),
        final=get("final"),
        decisions={d: get(f"decision|{d}") for d in DECISIONS},
        blocks={c: get(f"block|{c}") for c in categories},
        histograms={c: tuple(get(f"bin|{c}|{i}") for i in range(bins)) for c in categories},
        adjudicated=get("adjudicated"),
        disagreed=get("disagree"),
    )


def stat_names(categories: Sequence[str], bins: int) -> list[str]:
    """Every statistic :func:`summarize` reads: the keys to fetch from the window table for one policy."""
    names = ["posts", "escalated", "final", "adjudicated", "disagree", *(f"decision|{d}" for d in DECISIONS)]
    names += [f"block|{c}" for c in categories]
    names += [f"bin|{c}|{i}" for c in categories for i in range(bins)]
    return names


def combine(summaries: Iterable[Summary]) -> Summary:
    """Several windows as one (the trailing reference)."""
    items = list(summaries)
    if not items:
        raise ValueError("combine() needs at least one summary")

    def added(field: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in items:
            for key, n in getattr(s, field).items():
                out[key] = out.get(key, 0) + n
        return out

    histograms: dict[str, tuple[int, ...]] = {}
    for s in items:
        for category, hist in s.histograms.items():
            prev = histograms.get(category)
            histograms[category] = hist if prev is None else tuple(a + b for a, b in zip(prev, hist, strict=True))
    return Summary(
        posts=sum(s.posts for s in items), escalated=sum(s.escalated for s in items),
        final=sum(s.final for s in items), decisions=added("decisions"), blocks=added("blocks"),
        histograms=histograms, adjudicated=sum(s.adjudicated for s in items),
        disagreed=sum(s.disagreed for s in items),
    )


def shares(histogram: Sequence[float]) -> list[float]:
    """Bin counts (or weights) as shares summing to 1; all zeros stay zeros."""
    total = float(sum(histogram))
    return [h / total if total > 0 else 0.0 for h in histogram]


def psi(reference: Sequence[float], current: Sequence[float]) -> float:
    """Population stability index of ``current`` against ``reference`` (bin counts or shares, same bins):
    sum over bins of (a - e) * ln(a / e), shares floored at :data:`PSI_FLOOR`. 0 = same distribution; by the
    usual reading below 0.1 is stable, 0.1-0.25 a moderate shift, above 0.25 a major one."""
    if len(reference) != len(current):
        raise ValueError(f"histograms have {len(reference)} and {len(current)} bins: they must match")
    total = 0.0
    for e, a in zip(shares(reference), shares(current), strict=True):
        e, a = max(e, PSI_FLOOR), max(a, PSI_FLOOR)
        total += (a - e) * math.log(a / e)
    return total
