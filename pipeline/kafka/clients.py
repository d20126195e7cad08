"""aiokafka clients built from :class:`~pipeline.settings.Settings`, and the one place aiokafka errors
become ours.

The factories return *unstarted* clients (call them inside a running event loop: aiokafka binds the
loop at construction). Start and use them under :func:`broker_errors` so a broker that is down or
refuses an operation surfaces as :class:`~pipeline.errors.BrokerError` naming the broker and the fix::

    producer = make_producer(settings)
    with broker_errors("starting the producer", settings.bootstrap):
        await producer.start()
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, UnknownError
from aiokafka.helpers import create_ssl_context

from pipeline.errors import BrokerError, SettingsError
from pipeline.settings import KafkaSettings, Settings


def faust_credentials(kafka: KafkaSettings) -> Any:
    """The same security for a faust app (``broker_credentials``): None for PLAINTEXT."""
    import faust

    options = connection_options(kafka)
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(username=options["sasl_plain_username"], password=options["sasl_plain_password"],
                                     mechanism=options["sasl_mechanism"], ssl_context=options.get("ssl_context"))
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    return None


def connection_options(kafka: KafkaSettings) -> dict[str, Any]:
    """The security keyword arguments every aiokafka client takes (SSL context, SASL credentials).

    Every client of ours (producer, consumer, admin; a faust app through its credentials) is built with
    these, so one set of ``MODCASCADE_KAFKA_*`` settings secures them all. With SSL or SASL_SSL the context
    verifies the brokers' chain against ``ssl_cafile`` (unset: the system's CAs), checks host names unless
    ``ssl_check_hostname`` is off, and presents ``ssl_certfile``/``ssl_keyfile`` when set (mTLS).
    """
    options: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = create_ssl_context(
            cafile=_path(kafka.ssl_cafile), certfile=_path(kafka.ssl_certfile), keyfile=_path(kafka.ssl_keyfile),
        )
        context.check_hostname = kafka.ssl_check_hostname  # verify_mode stays CERT_REQUIRED
        options["ssl_context"] = context
    if kafka.security_protocol.startswith("SASL"):
        assert kafka.sasl_password is not None  # KafkaSettings validates SASL settings are complete
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return options


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _common(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.bootstrap,
        "client_id": settings.kafka.client_id,
        "request_timeout_ms": settings.kafka.request_timeout_ms,
        **connection_options(settings.kafka),
    }


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A producer with acks, idempotence, linger, ``max_request_size`` and security from settings; ``overrides``
    win. A record over ``max_request_size`` is refused by ``send`` itself (MessageSizeTooLargeError)."""
    acks: str | int = "all" if settings.kafka.acks == "all" else int(settings.kafka.acks)
    options: dict[str, Any] = {
        **_common(settings),
        "acks": acks,
        "enable_idempotence": settings.idempotence,
        "linger_ms": settings.kafka.linger_ms,
        "max_batch_size": settings.kafka.batch_size,
        "max_request_size": settings.kafka.max_request_size,
        **overrides,
    }
    if options["enable_idempotence"] and options["acks"] != "all":
        raise SettingsError(
            f"MODCASCADE_KAFKA_ACKS={settings.kafka.acks} cannot be used with the idempotent producer: "
            "set MODCASCADE_KAFKA_ACKS=all or MODCASCADE_KAFKA_IDEMPOTENCE=false"
        )
    return AIOKafkaProducer(**options)


def make_consumer(settings: Settings, *topics: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer of ``topics`` (none: assign or subscribe later) that reads from the earliest offset
    and never commits on its own: callers commit after their outputs are acknowledged (at-least-once).
    ``group_id=None`` reads without a consumer group (no joins, no commits). Fetch sizes come from settings
    (``max_partition_fetch_bytes``, ``fetch_max_bytes``; docs/message-sizes.md)."""
    options: dict[str, Any] = {
        **_common(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": settings.kafka.fetch_max_wait_ms,
        "max_partition_fetch_bytes": settings.kafka.max_partition_fetch_bytes,
        "fetch_max_bytes": settings.kafka.fetch_max_bytes,
        **({"session_timeout_ms": settings.kafka.session_timeout_ms,
            "heartbeat_interval_ms": settings.kafka.heartbeat_interval_ms} if group_id is not None else {}),
        **overrides,
    }
    return AIOKafkaConsumer(*topics, **options)


def make_admin(settings: Settings, **overrides: Any) -> AIOKafkaAdminClient:
    """An admin client (topics, configs, groups) with the same connection settings."""
    return AIOKafkaAdminClient(**{**_common(settings), **overrides})


@contextmanager
def broker_errors(action: str, bootstrap: str) -> Iterator[None]:
    """Translate aiokafka errors raised inside the block into :class:`BrokerError` (``from`` the original).

    ``action`` says what was being done ("starting the producer"); connection failures get the fix.
    """
    try:
        yield
    except (KafkaConnectionError, KafkaTimeoutError) as exc:
        raise BrokerError(
            f"{action}: cannot reach Kafka at {bootstrap} ({exc}). Start the embedded broker "
            "(`modcascade broker`) or set MODCASCADE_KAFKA_BOOTSTRAP (or KAFKA_BOOTSTRAP) to a reachable broker"
        ) from exc
    except KafkaError as exc:
        raise BrokerError(f"{action}: Kafka at {bootstrap} refused it ({exc})") from exc


async def start_client(client: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient, settings: Settings,
                       what: str) -> None:
    """Start an aiokafka client, translating failures; a client that failed to start is closed again.

    A broker without idempotent producers (the embedded one) fails InitProducerId with UnknownError; the
    message then names the setting that turns idempotence off.
    """
    try:
        with broker_errors(f"starting the {what}", settings.bootstrap):
            await client.start()
    except BrokerError as exc:
        await client.close() if isinstance(client, AIOKafkaAdminClient) else await client.stop()
        if isinstance(client, AIOKafkaProducer) and settings.idempotence and isinstance(exc.__cause__, UnknownError):
            raise BrokerError(
                f"Kafka at {settings.bootstrap} rejected the idempotent producer (InitProducerId). "
                "Brokers without it (such as the embedded one) need MODCASCADE_KAFKA_IDEMPOTENCE=false"
            ) from exc.__cause__
        raise
