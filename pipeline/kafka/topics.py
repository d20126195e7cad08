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
MAX_MESSAGE_BYTES = "max.message.bytes"


def default_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic configs of the data flow: ``verdicts`` is compacted. Its records are keyed by post id, and a
    redelivered post's verdict repeats the same ``verdict_id`` under the same key, so compaction keeps the
    latest verdict per post and readers that replay the topic (state rebuilds) read each post once, not its
    whole history. ``control`` is compacted too: the latest record per key is the state in force (a guard
    tripped or cleared for a policy/category), which a worker starting later reads in full; so is ``budget`` (the
    latest spend ledger per adjudication partition, read by the partition's next owner). Every other topic is a
    plain log (time/size retention).

    Every topic gets ``max.message.bytes`` = ``MODCASCADE_KAFKA_TOPIC_MAX_MESSAGE_BYTES``, at least the producer's
    ``max_request_size`` (checked at startup), so the broker takes every record our producers send, whatever
    the cluster's default (docs/message-sizes.md)."""
    topics = settings.topics.all()
    sized = {MAX_MESSAGE_BYTES: str(settings.kafka.topic_max_message_bytes)}
    configs = {name: dict(sized) for name in topics.values()}
    for role in ("verdicts", "control", "budget"):
        configs[topics[role]].update(COMPACT)
    return configs


async def ensure_topics(
    settings: Settings,
    names: Iterable[str] | None = None,
    partitions: int | None = None,
    *,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create ``names`` (default: the topics of ``settings.topics``) with ``partitions`` (default:
    ``MODCASCADE_KAFKA_PARTITIONS``) and ``MODCASCADE_KAFKA_REPLICATION_FACTOR``; return the ones created.

    ``configs`` maps a topic name to its topic configs (e.g. ``{"cleanup.policy": "compact"}``), merged over
    :func:`default_configs` (``verdicts`` compacted; every topic, also one outside the data flow, gets our
    ``max.message.bytes``), applied only when the topic is created: an existing topic keeps its configs. Returns
    once every topic shows up in the cluster metadata.
    """
    topics = list(settings.topics.all().values() if names is None else names)
    if not topics:
        return []
    count = settings.kafka.partitions if partitions is None else partitions
    defaults, given = default_configs(settings), configs or {}
    sized = {MAX_MESSAGE_BYTES: str(settings.kafka.topic_max_message_bytes)}
    requests = [
        NewTopic(name, count, settings.kafka.replication_factor,
                 topic_configs={**sized, **defaults.get(name, {}), **given.get(name, {})})
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
