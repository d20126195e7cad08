"""Reviewer statistics, computed from the decision rows (pure).

* **Items per hour**: per reviewer, decisions in the last hour before ``now``, and the rate over the reviewer's
  active span (first to last decision; shown only from two decisions on, since one decision has no span).
* **Agreement with the frontier**: on decided items that carry a frontier judgement (QA sample items: the
  frontier's verdict; audit items: the frontier's audit label; any item whose verdict came from the frontier), the
  share where the reviewer chose the same label (category, the safe class included).
* **Agreement between reviewers**: on items decided by two reviewers (QA items are reviewed twice, blind), the
  share of items where both chose the same decision and label. Each pair counts once; per reviewer, the share of
  their double-reviewed items where the other reviewer agreed.

Every share comes with its count, so a 100 % over two items reads as what it is.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import combinations


@dataclass(frozen=True, slots=True)
class DecisionRow:
    item_id: int
    reviewer: str
    decided_at: datetime
    decision: str
    label: str
    frontier_label: str | None


@dataclass(frozen=True, slots=True)
class Share:
    agree: int
    total: int

    @property
    def rate(self) -> float | None:
        return self.agree / self.total if self.total else None

    def __str__(self) -> str:
        rate = self.rate
        return "-" if rate is None else f"{rate:.0%} of {self.total}"


@dataclass(frozen=True, slots=True)
class ReviewerStats:
    reviewer: str
    decisions: int
    last_hour: int
    per_active_hour: float | None
    with_frontier: Share
    with_reviewers: Share


@dataclass(frozen=True, slots=True)
class Statistics:
    reviewers: tuple[ReviewerStats, ...]
    with_frontier: Share
    between_reviewers: Share
    decisions: int


def compute(rows: list[DecisionRow], now: datetime) -> Statistics:
    by_reviewer: dict[str, list[DecisionRow]] = defaultdict(list)
    by_item: dict[int, list[DecisionRow]] = defaultdict(list)
    for row in rows:
        by_reviewer[row.reviewer].append(row)
        by_item[row.item_id].append(row)

    pair_agree: dict[str, list[bool]] = defaultdict(list)
    pairs: list[bool] = []
    for decided in by_item.values():
        for a, b in combinations(decided, 2):
            same = (a.decision, a.label) == (b.decision, b.label)
            pairs.append(same)
            pair_agree[a.reviewer].append(same)
            pair_agree[b.reviewer].append(same)

    reviewers = []
    for name in sorted(by_reviewer):
        mine = sorted(by_reviewer[name], key=lambda r: r.decided_at)
        span_h = (mine[-1].decided_at - mine[0].decided_at).total_seconds() / 3600
        reviewers.append(ReviewerStats(
            reviewer=name,
            decisions=len(mine),
            last_hour=sum(1 for r in mine if now - timedelta(hours=1) < r.decided_at <= now),
            per_active_hour=len(mine) / span_h if len(mine) > 1 and span_h > 0 else None,
            with_frontier=_frontier_share(mine),
            with_reviewers=Share(sum(pair_agree[name]), len(pair_agree[name])),
        ))
    return Statistics(tuple(reviewers), _frontier_share(rows), Share(sum(pairs), len(pairs)), len(rows))


def _frontier_share(rows: list[DecisionRow]) -> Share:
    judged = [r for r in rows if r.frontier_label is not None]
    return Share(sum(1 for r in judged if r.label == r.frontier_label), len(judged))
