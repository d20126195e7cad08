"""Topic setup on the real broker: ``ensure_topics`` (what ``modcascade broker``, ``modcascade run`` and the
tests use) creates ``verdicts`` compacted, keyed by post id, and the other topics as plain logs; the config is
read back with DescribeConfigs (the embedded broker stores and reports it; Kafka does too)."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pipeline.kafka import delete_topics, ensure_topics, make_admin
from pipeline.settings import Settings
from tests.support.kafka import unique

pytestmark = pytest.mark.broker


async def _cleanup_policies(settings: Settings, topics: list[str]) -> dict[str, str | None]:
    admin = make_admin(settings)
    try:
        await admin.start()
        responses: list[Any] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics])
    finally:
        await admin.close()
    found: dict[str, str | None] = dict.fromkeys(topics)
    for response in responses:
        for error_code, _message, _type, name, entries, *_ in response.resources:
            assert error_code == 0, (name, error_code)
            for entry in entries:  # (name, value, read_only, ...)
                if entry[0] == "cleanup.policy":
                    found[name] = entry[1]
    return found


async def test_verdicts_are_created_compacted_and_the_other_topics_are_not(kafka_settings: Settings) -> None:
    settings = kafka_settings.model_copy(
        update={"topics": kafka_settings.topics.model_copy(update={"prefix": unique("hygiene") + "."})})
    topics = settings.topics.all()
    try:
        assert sorted(await ensure_topics(settings)) == sorted(topics.values())
        policies = await _cleanup_policies(settings, list(topics.values()))
    finally:
        await delete_topics(settings, list(topics.values()))
    assert policies.pop(topics["verdicts"]) == "compact"
    assert policies.pop(topics["control"]) == "compact"  # the guards in force: the latest record per key
    assert policies.pop(topics["budget"]) == "compact"  # the spend ledger of each adjudication partition
    # Kafka reports its default ("delete"); the embedded broker reports only configs that were set.
    assert set(policies.values()) <= {"delete", None}, policies
