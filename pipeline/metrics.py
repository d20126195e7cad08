"""Every Prometheus metric of modcascade, declared in one place against an injectable registry.

Workers build one :class:`Metrics` (usually on the default registry, which the HTTP endpoint serves);
tests build one on a fresh ``CollectorRegistry`` so they can read values without global state.
Names follow Prometheus conventions: ``modcascade_`` prefix, ``_total`` counters, base units (seconds).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

# Seconds. Covers a 5 ms cache hit up to a 60 s frontier call under backoff.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


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
    # Policy
    policy_info: Info
    policy_reloads: Counter
    policy_reload_errors: Counter
    policy_valid: Gauge
    # Feedback (retraining dataset)
    labels_written: Counter
    labels_skipped: Counter

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
        )


def serve(port: int, registry: CollectorRegistry | None = None) -> None:
    """Expose ``/metrics`` on ``port`` (0 = disabled)."""
    if port:
        start_http_server(port, registry=REGISTRY if registry is None else registry)
