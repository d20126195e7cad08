"""Observing many values at once (``observe_all``, the classify stage's latencies) leaves a histogram exactly as
observing each one does: every bucket, the count and the sum."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from pipeline.metrics import LATENCY_BUCKETS, observe_all


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in registry.collect() for s in metric.samples if not s.name.endswith("_created")}


@given(st.lists(st.one_of(st.floats(0.0, 100.0), st.sampled_from(LATENCY_BUCKETS), st.just(float("inf")),
                          st.just(float("nan")), st.floats(-1.0, 0.0)), max_size=200))
def test_observe_all_is_observe_once_per_value(values: list[float]) -> None:
    one_by_one, together = CollectorRegistry(), CollectorRegistry()
    a = Histogram("latency", "doc", ["route"], buckets=LATENCY_BUCKETS, registry=one_by_one)
    b = Histogram("latency", "doc", ["route"], buckets=LATENCY_BUCKETS, registry=together)
    child_a, child_b = a.labels("slm"), b.labels("slm")
    for value in values:
        child_a.observe(value)
    observe_all(child_b, values)
    expected, got = samples(one_by_one), samples(together)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        same = value == got[key] or (value != value and got[key] != got[key])  # NaN sums are equal too
        assert same or abs(value - got[key]) <= 1e-9 * max(1.0, abs(value)), key  # the sum's rounding may differ
