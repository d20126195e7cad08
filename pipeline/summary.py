"""What a run of the cascade did, read back from its output topics: the figures of the live summary.

Pure accounting, no I/O: feed it every record read from ``verdicts``, ``adjudication`` and
``dead-letter`` (duplicates included; they are counted once, by post id) and read the figures.

Cost compares the cascade with sending every valid post to the frontier model:

    cascade  = Σ verdict cost_usd (small model; 0 for cache hits)
             + escalated posts * (small-model cost + the policy's estimated frontier cost per post)
    frontier = valid posts * the policy's estimated frontier cost per post
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pipeline.policy import Policy
from pipeline.records import AdjudicationRequest, DeadLetter, Record, Verdict


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in [0, 100]) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats
    return ordered[int(rank) - 1]


@dataclass
class RunSummary:
    policy: Policy
    decisions: Counter[str] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    escalations: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    small_model_usd: float = 0.0
    duplicates: int = 0
    _seen: set[str] = field(default_factory=set)

    def add(self, record: Record) -> None:
        if isinstance(record, Verdict):
            if self._first(record.post_id):
                self.decisions[record.decision] += 1
                self.routes[record.route] += 1
                if record.category:
                    self.categories[record.category] += 1
                self.latencies_ms.append(record.latency_ms)
                self.small_model_usd += record.cost_usd
        elif isinstance(record, AdjudicationRequest):
            if self._first(record.post.id):
                self.escalations[record.candidate_category or "none"] += 1
                self.latencies_ms.append(max(0.0, (record.enqueued_at - record.ingested_at).total_seconds() * 1000))
        elif isinstance(record, DeadLetter):
            key = f"dead:{record.source_topic}:{record.source_partition}:{record.source_offset}"
            if self._first(key):
                self.dead_letters[record.reason] += 1

    def _first(self, key: str) -> bool:
        if key in self._seen:
            self.duplicates += 1
            return False
        self._seen.add(key)
        return True

    @property
    def decided(self) -> int:
        """Valid posts with an output: a final verdict or an adjudication request."""
        return self.decisions.total() + self.escalations.total()

    @property
    def records(self) -> int:
        """Input records accounted for (valid posts and dead letters)."""
        return self.decided + self.dead_letters.total()

    @property
    def cache_hit_rate(self) -> float:
        settled = self.routes.total()
        return self.routes["cache"] / settled if settled else 0.0

    @property
    def escalation_rate(self) -> float:
        return self.escalations.total() / self.decided if self.decided else 0.0

    @property
    def cascade_usd(self) -> float:
        prices = self.policy.prices
        per_escalation = prices.small_model_usd_per_1k_posts / 1000 + prices.est_frontier_usd_per_post
        return self.small_model_usd + self.escalations.total() * per_escalation

    @property
    def all_frontier_usd(self) -> float:
        return self.decided * self.policy.prices.est_frontier_usd_per_post

    def latency_ms(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)
