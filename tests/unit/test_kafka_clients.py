"""Client factories take security and delivery options from settings; aiokafka errors become BrokerError."""

from __future__ import annotations

import socket
import ssl

import pytest
from pydantic import SecretStr

from pipeline.errors import BrokerError, SettingsError
from pipeline.kafka import broker_errors, connection_options, make_consumer, make_producer
from pipeline.settings import KafkaSettings, Settings


def _settings(bootstrap: str, **kafka: object) -> Settings:
    """Settings for a configured Kafka, independent of the environment the tests run in."""
    base = Settings()
    return base.model_copy(update={"kafka": base.kafka.model_copy(update={"bootstrap": bootstrap, **kafka})})


def test_plaintext_needs_no_ssl_or_sasl() -> None:
    assert connection_options(KafkaSettings(security_protocol="PLAINTEXT")) == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_gets_an_ssl_context_and_the_credentials() -> None:
    kafka = KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="svc",
                          sasl_password=SecretStr("s3cret"))
    options = connection_options(kafka)
    assert isinstance(options.pop("ssl_context"), ssl.SSLContext)
    assert options == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                       "sasl_plain_username": "svc", "sasl_plain_password": "s3cret"}


async def test_idempotence_with_acks_1_names_both_settings() -> None:
    settings = _settings("kafka:9092", acks="1", idempotence=None)
    assert settings.idempotence  # automatic: on for a configured Kafka
    with pytest.raises(SettingsError, match=r"MODCASCADE_KAFKA_ACKS=1.*MODCASCADE_KAFKA_IDEMPOTENCE"):
        make_producer(settings)


async def test_consumers_never_auto_commit_and_start_from_the_earliest_offset() -> None:
    consumer = make_consumer(_settings("kafka:9092"), "posts", group_id="g")
    try:
        assert (consumer._enable_auto_commit, consumer._auto_offset_reset) == (False, "earliest")
    finally:
        await consumer.stop()


async def test_an_unreachable_broker_becomes_a_broker_error_naming_the_fix() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    settings = _settings(address, idempotence=False)
    producer = make_producer(settings)
    try:
        with (pytest.raises(BrokerError, match="MODCASCADE_KAFKA_BOOTSTRAP") as info,
              broker_errors("starting the producer", settings.bootstrap)):
            await producer.start()
    finally:
        await producer.stop()
    assert address in str(info.value)
    assert info.value.__cause__ is not None
