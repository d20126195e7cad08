"""Create the topics of the data flow (idempotent: topics that already exist are left as they are)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.errors import BrokerError
from pipeline.kafka.clients import broker_errors, make_admin
from pipeline.settings import Settings

TOPIC_ALREADY_EXISTS = 36
_METADATA_WAIT_S = 10.0
COMPACT = {"cleanup.policy": "compact"}


def default_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic configs of the data flow: ``verdicts`` is compacted. Its records are keyed by post id, and a
    redelivered post's verdict repeats the same ``verdict_id`` under the same key, so compaction keeps the
    latest verdict per post and readers that replay the topic (state rebuilds) read each post once, not its
    whole history. Every other topic is a plain log (time/size retention)."""
    return {settings.topics.all()["verdicts"]: dict(COMPACT)}


async def ensure_topics(
    settings: Settings,
    names: Iterable[str] | None = None,
    partitions: int | None = None,
    *,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create ``names`` (default: the topics of ``settings.topics``) with ``partitions`` (default:
    ``MODCASCADE_KAFKA_PARTITIONS``) and ``MODCASCADE_KAFKA_REPLICATION_FACTOR``; return the ones created.

    ``configs`` maps a topic name to its topic configs (e.g. ``{"cleanup.policy": "compact"}``), on top of
    :func:`default_configs` (``verdicts`` compacted), applied only when the topic is created: an existing
    topic keeps its configs. Returns once every topic shows up in the cluster metadata.
    """
    topics = list(settings.topics.all().values() if names is None else names)
    if not topics:
        return []
    count = settings.kafka.partitions if partitions is None else partitions
    configs = {**default_configs(settings), **(configs or {})}
    requests = [
        NewTopic(name, count, settings.kafka.replication_factor, topic_configs=dict(configs.get(name, {})))
        for name in topics
    ]
    admin = make_admin(settings)
    with broker_errors(f"creating topics {', '.join(topics)}", settings.bootstrap):
        try:
            await admin.start()
            response = await admin.create_topics(requests)
            created = _check(response, settings)
            await _await_metadata(admin, topics)
        finally:
            await admin.close()
    return created


def _check(response: Any, settings: Settings) -> list[str]:
    created: list[str] = []
    for entry in response.topic_errors:  # (topic, error_code[, error_message]) depending on the version
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        if code == 0:
            created.append(topic)
        elif code != TOPIC_ALREADY_EXISTS:
            raise BrokerError(
                f"cannot create topic {topic!r} on {settings.bootstrap}: error {code} ({message}); check "
                f"MODCASCADE_KAFKA_PARTITIONS={settings.kafka.partitions} and "
                f"MODCASCADE_KAFKA_REPLICATION_FACTOR={settings.kafka.replication_factor} against the cluster"
            )
    return created


async def _await_metadata(admin: AIOKafkaAdminClient, topics: list[str]) -> None:
    """Wait until every topic has partitions in the metadata, so clients started next find them."""
    deadline = time.monotonic() + _METADATA_WAIT_S
    while True:
        described = await admin.describe_topics(topics)
        missing = sorted(
            set(topics) - {t["topic"] for t in described if t["error_code"] == 0 and t["partitions"]}
        )
        if not missing:
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"topics {', '.join(missing)} were created but not visible after {_METADATA_WAIT_S:g} s")
        await asyncio.sleep(0.1)


async def delete_topics(settings: Settings, names: Iterable[str]) -> None:
    """Delete topics (missing ones are ignored). For scratch and test topics."""
    topics = list(names)
    if not topics:
        return
    admin = make_admin(settings)
    with broker_errors(f"deleting topics {', '.join(topics)}", settings.bootstrap):
        try:
            await admin.start()
            await admin.delete_topics(topics)
        finally:
            await admin.close()
