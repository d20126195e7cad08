"""What a run of the cascade did, read back from its output topics: the figures of the live summary.

Pure accounting, no I/O: feed it every record read from ``verdicts``, ``adjudication`` and
``dead-letter`` (duplicates included; they are counted once, by post id) and read the figures.

Every input record ends in one of: a small-model verdict (route slm or cache), an escalation, or a dead
letter; an escalated post later gets its final verdict from the adjudicate worker (route frontier or
fallback), or is still *awaiting* adjudication.

Cost compares the cascade with sending every valid post to the frontier model:

    cascade  = Σ small-model verdict cost_usd (0 for cache hits) + escalated posts * small-model cost
             + Σ adjudicated verdict cost_usd  (real: the frontier's usage * the policy's prices)
             + posts still awaiting adjudication * the policy's estimated frontier cost per post
    frontier = valid posts * the policy's estimated frontier cost per post
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pipeline.policy import Policy
from pipeline.records import AdjudicationRequest, DeadLetter, Record, Verdict

ADJUDICATED_ROUTES = frozenset({"frontier", "fallback"})


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
    """Final verdicts by decision, whichever worker decided them."""
    routes: Counter[str] = field(default_factory=Counter)
    """Final verdicts by route: slm, cache (classify worker), frontier, fallback (adjudicate worker)."""
    categories: Counter[str] = field(default_factory=Counter)
    escalations: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    """Classify path: from the post's ``created_at`` (else its Kafka timestamp: when it entered the pipeline) to the
    classify worker's decision, a verdict or an escalation (``Verdict.latency_ms``, ``enqueued_at - ingested_at``)."""
    adjudication_latencies_ms: list[float] = field(default_factory=list)
    """Post to final adjudicated verdict."""
    small_model_usd: float = 0.0
    frontier_usd: float = 0.0
    """Real cost of the adjudicated verdicts (from the frontier's usage fields)."""
    fallback_flags: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    _seen: set[str] = field(default_factory=set)

    def add(self, record: Record) -> None:
        if isinstance(record, Verdict):
            if self._first(f"verdict:{record.post_id}"):
                self._add_verdict(record)
        elif isinstance(record, AdjudicationRequest):
            if not record.audit and self._first(f"escalation:{record.post.id}"):  # audits are not escalations
                self.escalations[record.candidate_category or "none"] += 1
                self.latencies_ms.append(max(0.0, (record.enqueued_at - record.ingested_at).total_seconds() * 1000))
        elif isinstance(record, DeadLetter):
            key = f"dead:{record.source_topic}:{record.source_partition}:{record.source_offset}"
            if self._first(key):
                self.dead_letters[record.reason] += 1

    def _add_verdict(self, verdict: Verdict) -> None:
        self.decisions[verdict.decision] += 1
        self.routes[verdict.route] += 1
        if verdict.category:
            self.categories[verdict.category] += 1
        if verdict.route in ADJUDICATED_ROUTES:
            self.adjudication_latencies_ms.append(verdict.latency_ms)
            self.frontier_usd += verdict.cost_usd
            self.fallback_flags.update(verdict.flags if verdict.route == "fallback" else ())
        else:
            self.latencies_ms.append(verdict.latency_ms)
            self.small_model_usd += verdict.cost_usd

    def _first(self, key: str) -> bool:
        if key in self._seen:
            self.duplicates += 1
            return False
        self._seen.add(key)
        return True

    @property
    def settled_by_small_model(self) -> int:
        return self.routes["slm"] + self.routes["cache"]

    @property
    def adjudicated(self) -> int:
        return self.routes["frontier"] + self.routes["fallback"]

    @property
    def awaiting(self) -> int:
        """Escalated posts without a final verdict yet."""
        return max(0, self.escalations.total() - self.adjudicated)

    @property
    def decided(self) -> int:
        """Valid posts with an output of the classify worker: a final verdict or an adjudication request."""
        return self.settled_by_small_model + self.escalations.total()

    @property
    def records(self) -> int:
        """Input records accounted for (valid posts and dead letters)."""
        return self.decided + self.dead_letters.total()

    @property
    def cache_hit_rate(self) -> float:
        settled = self.settled_by_small_model
        return self.routes["cache"] / settled if settled else 0.0

    @property
    def escalation_rate(self) -> float:
        return self.escalations.total() / self.decided if self.decided else 0.0

    @property
    def cascade_usd(self) -> float:
        prices = self.policy.prices
        return (self.small_model_usd + self.escalations.total() * prices.small_model_usd_per_1k_posts / 1000
                + self.frontier_usd + self.awaiting * prices.est_frontier_usd_per_post)

    @property
    def all_frontier_usd(self) -> float:
        return self.decided * self.policy.prices.est_frontier_usd_per_post

    def latency_ms(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)
