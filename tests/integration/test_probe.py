"""The feature probe runs against the configured broker and reports every feature with what it saw."""

from __future__ import annotations

import pytest

from pipeline.kafka import probe_features
from pipeline.settings import Settings

pytestmark = pytest.mark.broker

FEATURES = {"idempotent_producer", "transactions", "consumer_group_rebalance", "compacted_topic", "max_message_size"}


async def test_probe_reports_every_feature_and_rebalancing_works(kafka_settings: Settings) -> None:
    results = await probe_features(kafka_settings, timeout_s=30)
    assert set(results) == FEATURES
    for name, result in results.items():
        assert result.detail.strip(), f"{name} has no detail"
        assert isinstance(result.supported, bool)
    # Whether idempotence and transactions work differs between tansu and Kafka; rebalancing works on both.
    rebalance = results["consumer_group_rebalance"]
    assert rebalance.supported, rebalance.detail
    assert results["max_message_size"].supported, results["max_message_size"].detail
