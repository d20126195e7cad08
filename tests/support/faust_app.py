"""A tiny faust-streaming app for test_environment: copies every record from the posts topic to the
verdicts topic, byte for byte. Run as ``python -m faust -A tests.support.faust_app worker``.

Broker and topic names come from the settings module (``MODCASCADE_KAFKA_BOOTSTRAP``,
``MODCASCADE_TOPIC_POSTS``, ``MODCASCADE_TOPIC_VERDICTS``), set by the test that starts the worker.
"""

from __future__ import annotations

import faust

from pipeline.kafka.clients import faust_credentials
from pipeline.settings import load_settings

settings = load_settings()
topics = settings.topics.all()

app = faust.App(
    f"modcascade-env-{topics['posts']}",  # also the consumer group: fresh for every test's topics
    broker=f"kafka://{settings.bootstrap}",
    broker_credentials=faust_credentials(settings.kafka),
    store="memory://",
    key_serializer="raw",
    value_serializer="raw",
    web_enabled=False,
    topic_partitions=1,
    consumer_auto_offset_reset="earliest",
    # Join in seconds on the embedded broker (faust's defaults wait ~30 s for the first rebalance).
    broker_rebalance_timeout=5,
    broker_session_timeout=6,
    broker_heartbeat_interval=1,
)

source = app.topic(topics["posts"], key_type=bytes, value_type=bytes)
sink = app.topic(topics["verdicts"], key_type=bytes, value_type=bytes)


@app.agent(source)
async def copy(stream: faust.StreamT[bytes]) -> None:
    async for key, value in stream.items():
        await sink.send(key=key, value=value)
