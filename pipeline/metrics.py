"""Every Prometheus metric of modcascade, declared in one place against an injectable registry.

Workers build one :class:`Metrics` (usually on the default registry, which the HTTP endpoint serves);
tests build one on a fresh ``CollectorRegistry`` so they can read values without global state.
Names follow Prometheus conventions: ``modcascade_`` prefix, ``_total`` counters, base units (seconds).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

# Seconds. Covers a 5 ms cache hit up to a 60 s frontier call under backoff.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
WILSON_Z = 1.959963984540054
"""z of a two-sided 95% interval: the live-precision gauges and reports give 95% Wilson intervals."""


@dataclass(frozen=True, slots=True)
class Interval:
    """A proportion ``successes / n`` with its Wilson score interval [low, high]."""

    successes: int
    n: int
    estimate: float
    low: float
    high: float


def wilson_interval(successes: int, n: int, z: float = WILSON_Z) -> Interval:
    """The Wilson score interval of a binomial proportion (95% with the default ``z``).

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 or n successes and for small n,
    which is what a thin audit sample of a rare category gives. ``n == 0`` says nothing: estimate 0, interval
    [0, 1]."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if not z > 0:
        raise ValueError(f"z must be > 0, got {z!r}")
    if n == 0:
        return Interval(0, 0, 0.0, 0.0, 1.0)
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denominator
    # At 0 or n successes the bound is exactly 0 or 1; rounding must not leave it a hair off.
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return Interval(successes, n, p, low, high)


@dataclass
class LivePrecision:
    """Running audit counts of this process, per category, and the live-precision gauge they set
    (``Metrics.live_precision``; the adjudication stage keeps one).

    The gauge is this worker's view since it started (several adjudicate workers each see part of the sample and
    restarts begin again at zero): the authoritative number comes from the dataset's audit labels
    (``modcascade dataset stats``), which every worker's outcomes reach."""

    gauge: Gauge
    counts: dict[str, list[int]] = field(default_factory=dict)  # category -> [agreed, audited]

    def record(self, category: str, agrees: bool) -> Interval:
        counts = self.counts.setdefault(category, [0, 0])
        counts[0] += int(agrees)
        counts[1] += 1
        interval = wilson_interval(counts[0], counts[1])
        for bound, value in (("estimate", interval.estimate), ("low", interval.low), ("high", interval.high)):
            self.gauge.labels(category, bound).set(value)
        return interval


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    # Intake
    records_consumed: Counter
    consumer_lag: Gauge
    dead_letters: Counter
    # Classification
    batch_size: Histogram
    model_latency: Histogram
    model_errors: Counter
    backend_up: Gauge
    backpressure_seconds: Counter
    end_to_end_latency: Histogram
    decisions: Counter
    escalations: Counter
    cache_lookups: Counter
    cache_entries: Gauge
    # Frontier
    frontier_tokens: Counter
    frontier_cost_usd: Counter
    frontier_calls: Counter
    fallbacks: Counter
    frontier_holds: Counter
    breaker_open: Gauge
    breaker_transitions: Counter
    # Shadow policy (a candidate decided next to the live one)
    shadow_decisions: Counter
    shadow_disagreements: Counter
    # Audit sample (final small-model verdicts judged again by the frontier)
    audit_requests: Counter
    audit_outcomes: Counter
    audit_skipped: Counter
    audit_cost_usd: Counter
    live_precision: Gauge
    # Policy
    policy_info: Info
    policy_reloads: Counter
    policy_reload_errors: Counter
    policy_valid: Gauge
    # Feedback (retraining dataset)
    labels_written: Counter
    labels_skipped: Counter
    # Drift monitor (one window behind: each value is that of the last window evaluated)
    monitor_windows: Counter
    monitor_refetched: Counter
    monitor_window_end: Gauge
    monitor_psi: Gauge
    monitor_escalation_rate: Gauge
    monitor_block_rate: Gauge
    monitor_disagreement_rate: Gauge
    monitor_dead_letter_rate: Gauge
    alerts: Counter
    # Action guard (set by the classify workers that read the control topic)
    guard_tripped: Gauge
    guard_diverted: Counter
    guard_verdicts: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        reg = REGISTRY if registry is None else registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"modcascade_{name}", doc, labels, registry=reg)

        def histogram(name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()) -> Histogram:
            return Histogram(f"modcascade_{name}", doc, labels, buckets=buckets, registry=reg)

        return cls(
            registry=reg,
            records_consumed=counter("records_consumed", "Records read from a topic.", ("topic",)),
            consumer_lag=Gauge(
                "modcascade_consumer_lag",
                "Records of an assigned partition not yet committed by this worker's group: the partition's high "
                "watermark minus the committed offset (the position before the first commit). Updated after each "
                "fetch and commit; a revoked partition's series is removed.",
                ("group", "topic", "partition"), registry=reg,
            ),
            dead_letters=counter("dead_letters", "Records sent to the dead-letter topic.", ("stage", "reason")),
            batch_size=histogram("batch_size", "Posts per classifier call.", BATCH_BUCKETS),
            model_latency=histogram("model_latency_seconds", "Classifier call latency.", LATENCY_BUCKETS),
            model_errors=counter("model_errors", "Failed classifier calls (retried).", ("kind",)),
            backend_up=Gauge("modcascade_backend_up", "1 while the model backend answers, 0 while it is retried.",
                             registry=reg),
            backpressure_seconds=counter("backpressure_seconds", "Time consumption was paused waiting for a backend."),
            end_to_end_latency=histogram(
                "end_to_end_latency_seconds", "Post created/ingested to verdict published.", LATENCY_BUCKETS, ("route",)
            ),
            decisions=counter("decisions", "Verdicts published.", ("decision", "category", "route")),
            escalations=counter("escalations", "Posts sent to adjudication.", ("category",)),
            cache_lookups=counter("cache_lookups", "Score-cache lookups (result: hit, miss).", ("result",)),
            cache_entries=Gauge("modcascade_cache_entries", "Entries in the score cache.", registry=reg),
            frontier_tokens=counter("frontier_tokens", "Frontier tokens used.", ("kind",)),
            frontier_cost_usd=counter("frontier_cost_usd", "Frontier spend in US dollars."),
            frontier_calls=counter("frontier_calls", "Frontier calls by outcome: ok, an error kind (rate_limited, "
                                   "overloaded, timeout, ...) or an unusable answer (refusal, out_of_schema, ...).",
                                   ("outcome",)),
            fallbacks=counter("fallbacks", "Verdicts the policy's fallback decided, by reason.", ("reason",)),
            frontier_holds=counter("frontier_holds", "Pauses holding a request (fallback: hold), by reason.",
                                   ("reason",)),
            breaker_open=Gauge("modcascade_frontier_breaker_open", "1 while the frontier circuit breaker is open.",
                               registry=reg),
            breaker_transitions=counter("frontier_breaker_transitions", "Circuit breaker state changes, by the state "
                                        "entered (open, half_open, closed).", ("state",)),
            shadow_decisions=counter("shadow_decisions", "What the shadow policy would have decided, by decision "
                                     "and category.", ("decision", "category")),
            shadow_disagreements=counter("shadow_disagreements", "Posts the shadow policy would have decided "
                                         "differently from the live one, by live and shadow decision.",
                                         ("live", "shadow")),
            audit_requests=counter("audit_requests", "Final verdicts drawn into the audit sample (sent to the "
                                   "frontier again), by route and category ('none' for allows).",
                                   ("route", "category")),
            audit_outcomes=counter("audit_outcomes", "Audits the frontier answered, by the audited verdict's route "
                                   "and category ('none' for allows) and agreement (agree, disagree).",
                                   ("route", "category", "agreement")),
            audit_skipped=counter("audit_skipped", "Audits dropped without an answer, by reason (over_budget: the "
                                  "audit budget; frontier_unavailable, frontier_rejected, frontier_refusal, ...).",
                                  ("reason",)),
            audit_cost_usd=counter("audit_cost_usd", "Frontier spend on audits in US dollars (also counted in "
                                   "modcascade_frontier_cost_usd_total)."),
            live_precision=Gauge(
                "modcascade_audit_live_precision",
                "Estimated live precision of the small model's final verdicts of a category ('none' for allows): "
                "the share of audited verdicts the frontier agreed with (bound=estimate) and its 95% Wilson "
                "interval (bound=low, high), from this process's audits since it started; the dataset's audit "
                "labels give the authoritative number (modcascade dataset stats).",
                ("category", "bound"), registry=reg),
            policy_info=Info("modcascade_policy", "The policy in force.", registry=reg),
            policy_reloads=counter("policy_reloads", "Policy reloads that changed the policy in force."),
            policy_reload_errors=counter("policy_reload_errors", "Policy edits rejected as invalid."),
            policy_valid=Gauge(
                "modcascade_policy_file_valid",
                "1 if the policy file on disk is valid, 0 if the last edit was rejected.",
                registry=reg,
            ),
            labels_written=counter("labels_written", "Labels written to the retraining dataset.", ("source",)),
            labels_skipped=counter("labels_skipped", "Labels that added no dataset row: duplicate (delivered again) "
                                   "or superseded (a better label of the post is kept).", ("reason",)),
            monitor_windows=counter("monitor_windows", "Windows the monitor evaluated, by policy.", ("policy",)),
            monitor_refetched=counter("monitor_refetched", "Records the monitor read back by itself because its "
                                      "stream skipped over them (a gap in the offsets delivered, as faust can leave "
                                      "around a rebalance), by topic.", ("topic",)),
            monitor_window_end=Gauge("modcascade_monitor_window_end_seconds", "End (Unix time) of the last window "
                                     "the monitor evaluated, by policy.", ("policy",), registry=reg),
            monitor_psi=Gauge("modcascade_monitor_psi", "Population stability index of a category's small-model "
                              "scores in the last window against the reference.", ("policy", "category"),
                              registry=reg),
            monitor_escalation_rate=Gauge("modcascade_monitor_escalation_rate", "Share of posts escalated in the "
                                          "last window.", ("policy",), registry=reg),
            monitor_block_rate=Gauge("modcascade_monitor_block_rate", "Share of final verdicts blocked in a category "
                                     "in the last window.", ("policy", "category"), registry=reg),
            monitor_disagreement_rate=Gauge("modcascade_monitor_disagreement_rate", "Share of frontier verdicts that "
                                            "differ from the small model's top label in the last window.",
                                            ("policy",), registry=reg),
            monitor_dead_letter_rate=Gauge("modcascade_monitor_dead_letter_rate", "Share of records dead-lettered in "
                                           "the last window.", registry=reg),
            alerts=counter("alerts", "Alerts the monitor raised, by kind (drift, escalation_rate, block_rate, "
                           "disagreement, dead_letter_rate), policy and category ('' for whole-stream alerts).",
                           ("kind", "policy", "category")),
            guard_tripped=Gauge("modcascade_guard_tripped", "1 while the action guard of a policy's category is "
                                "tripped (its would-be blocks are escalated instead), 0 once cleared.",
                                ("policy", "category"), registry=reg),
            guard_diverted=counter("guard_diverted", "Would-be blocks a tripped action guard sent elsewhere instead, "
                                   "by policy, category and where to (adjudication, review).",
                                   ("policy", "category", "to")),
            guard_verdicts=counter("guard_verdicts", "Verdicts decided under a tripped action guard (Verdict.guard "
                                   "set), by the guarded category, decision and route.",
                                   ("category", "decision", "route")),
        )


def observe_all(histogram: Histogram, values: Iterable[float]) -> None:
    """Observe every one of ``values`` in ``histogram`` (a labelled child, or one without labels): the same bucket
    counts and sum as one ``observe`` each, with one increment per bucket hit and one for the sum. The classify
    stage observes one latency per post; ``observe`` takes two locks and walks the bounds per value (~0.8 µs), this
    finds each bucket by bisection (~0.2 µs). It reads the child's bucket bounds and values, as ``observe`` does:
    ``tests/unit/test_metrics.py`` holds it equal to ``observe`` on the installed prometheus-client."""
    bounds = histogram._upper_bounds  # the bucket bounds, +Inf last
    hits: Tally[int] = Tally()
    total = 0.0
    for value in values:
        total += value
        if value == value:  # NaN falls in no bucket (no bound compares), as with observe
            hits[bisect_left(bounds, value)] += 1
    histogram._raise_if_not_observable()  # type: ignore[no-untyped-call]
    histogram._sum.inc(total)
    buckets = histogram._buckets
    for index, count in hits.items():
        buckets[index].inc(count)


def serve(port: int, registry: CollectorRegistry | None = None) -> None:
    """Expose ``/metrics`` on ``port`` (0 = disabled)."""
    if port:
        start_http_server(port, registry=REGISTRY if registry is None else registry)
