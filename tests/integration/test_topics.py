"""ensure_topics creates the five data-flow topics with the configured partitions, and is idempotent."""

from __future__ import annotations

import pytest

from pipeline.kafka import delete_topics, ensure_topics, make_admin
from pipeline.settings import Settings
from tests.support.kafka import unique

pytestmark = pytest.mark.broker


async def _partition_counts(settings: Settings, names: list[str]) -> dict[str, int]:
    admin = make_admin(settings)
    try:
        await admin.start()
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}


async def test_creates_every_topic_with_the_configured_partitions_and_is_idempotent(
    kafka_settings: Settings,
) -> None:
    # A unique prefix keeps a shared real Kafka's own topics out of it.
    settings = kafka_settings.model_copy(
        update={"topics": kafka_settings.topics.model_copy(update={"prefix": unique("topics") + "."})}
    )
    names = list(settings.topics.all().values())
    assert len(names) == 9  # the five of the data flow, shadow, the monitor's alerts and control, and budget
    try:
        assert sorted(await ensure_topics(settings)) == sorted(names)
        expected = dict.fromkeys(names, settings.kafka.partitions)
        assert await _partition_counts(settings, names) == expected

        assert await ensure_topics(settings) == []  # already there: nothing created, no error
        assert await _partition_counts(settings, names) == expected
    finally:
        await delete_topics(settings, names)


async def test_explicit_names_and_partitions(kafka_settings: Settings) -> None:
    name = unique("topics-explicit")
    try:
        assert await ensure_topics(kafka_settings, [name], partitions=3) == [name]
        assert await _partition_counts(kafka_settings, [name]) == {name: 3}
    finally:
        await delete_topics(kafka_settings, [name])
