"""Kafka security options without a broker: SASL_SSL with SCRAM, client certificates (mTLS), host-name
checking, the settings' variables, and that every client factory passes the same options to aiokafka."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from pipeline.kafka import connection_options, make_admin, make_consumer, make_producer
from pipeline.settings import KafkaSettings, Settings, load_settings

# A self-signed test certificate and its key (EC P-256, valid until 2126), generated for these tests only:
# it protects nothing. Used as the client certificate, as the CA that trusts it, and as a server certificate.
CERT = """-----BEGIN CERTIFICATE-----
MIIBmTCCAT+gAwIBAgIUPBIEouQND+mjXnQ+l1+gjreI3AswCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWbW9kY2FzY2FkZS10ZXN0LWNsaWVudDAgFw0yNjExMjQyMjI1
MjNaGA8yMTI2MTAzMTIyMjUyM1owITEfMB0GA1UEAwwWbW9kY2FzY2FkZS10ZXN0
LWNsaWVudDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABEw8vS7iNwsd5AVm0JYD
jVbiom+zWQTOae4VutaAHuERXgQzkxGDLRRYCxl1aiHAjGgREHvA45DXG+MoaK6i
pbSjUzBRMB0GA1UdDgQWBBRdTXI/YOisZwtM6MZ/vlx3DZvBfjAfBgNVHSMEGDAW
gBRdTXI/YOisZwtM6MZ/vlx3DZvBfjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49
BAMCA0gAMEUCIQC6PVZhiv8KYlmptoXKglzv4S7/RXy9MbByZPPxe2pwKgIgDmxB
zbjpxBUsZ50jZCgQvL4NJ86K8gGaB3AhQGCzBKA=
-----END CERTIFICATE-----
"""
KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8CWtdo3WavbZRLma
t7/TJvPTTQWWRlSXhVbpDgSYtuihRANCAARMPL0u4jcLHeQFZtCWA41W4qJvs1kE
zmnuFbrWgB7hEV4EM5MRgy0UWAsZdWohwIxoERB7wOOQ1xvjKGiuoqW0
-----END PRIVATE KEY-----
"""
SUBJECT = ((("commonName", "modcascade-test-client"),),)


@pytest.fixture
def pem(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text(CERT)
    key.write_text(KEY)
    return cert, key


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_with_scram_gets_a_verifying_context_and_the_credentials(
    mechanism: str, pem: tuple[Path, Path]
) -> None:
    cert, _ = pem
    kafka = KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism=mechanism, sasl_username="svc",
                          sasl_password=SecretStr("s3cret"), ssl_cafile=cert)
    options = connection_options(kafka)
    context = options.pop("ssl_context")
    assert options == {"security_protocol": "SASL_SSL", "sasl_mechanism": mechanism,
                       "sasl_plain_username": "svc", "sasl_plain_password": "s3cret"}
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [ca["subject"] for ca in context.get_ca_certs()] == [SUBJECT]  # ssl_cafile, not the system's


def test_client_certificate_and_key_are_loaded_and_hostname_checking_can_be_turned_off(
    monkeypatch: pytest.MonkeyPatch, pem: tuple[Path, Path]
) -> None:
    from aiokafka.helpers import create_ssl_context

    import pipeline.kafka.clients as clients

    seen: list[dict[str, object]] = []

    def spy(**kwargs: object) -> ssl.SSLContext:
        seen.append(kwargs)
        context: ssl.SSLContext = create_ssl_context(**kwargs)  # loads the chain: a key not matching fails
        return context

    monkeypatch.setattr(clients, "create_ssl_context", spy)
    cert, key = pem
    kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=cert, ssl_certfile=cert, ssl_keyfile=key,
                          ssl_check_hostname=False)
    context = connection_options(kafka)["ssl_context"]
    assert seen == [{"cafile": str(cert), "certfile": str(cert), "keyfile": str(key)}]
    assert context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname

    wrong = cert.with_name("other.key")
    wrong.write_text(KEY.replace("MIGHAgEAMBMGByqGSM49", "MIGHAgEAMBMGByqGSM48"))
    with pytest.raises(ssl.SSLError):
        connection_options(kafka.model_copy(update={"ssl_keyfile": wrong}))


async def test_the_client_certificate_is_presented_in_a_real_mtls_handshake(pem: tuple[Path, Path]) -> None:
    """A TLS server that requires a client certificate (as a broker with ssl.client.auth=required does)."""
    cert, key = pem
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(cert))
    server_context.load_cert_chain(str(cert), str(key))
    server_context.verify_mode = ssl.CERT_REQUIRED
    peers: list[object] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peercert"))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    # The test certificate names no host, so host-name checking is off; the chain is still verified.
    kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=cert, ssl_certfile=cert, ssl_keyfile=key,
                          ssl_check_hostname=False)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=connection_options(kafka)["ssl_context"])
        writer.close()
        async with asyncio.timeout(5):
            while not peers:
                await asyncio.sleep(0.01)
    finally:
        server.close()
        await server.wait_closed()
    assert isinstance(peers[0], dict) and peers[0]["subject"] == SUBJECT


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("MODCASCADE_") or name.upper() == "KAFKA_BOOTSTRAP":
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("clean_env")
def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, pem: tuple[Path, Path]) -> None:
    assert KafkaSettings().ssl_check_hostname is True
    cert, key = pem
    monkeypatch.setenv("MODCASCADE_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("MODCASCADE_KAFKA_SSL_CERTFILE", str(cert))
    monkeypatch.setenv("MODCASCADE_KAFKA_SSL_KEYFILE", str(key))
    monkeypatch.setenv("MODCASCADE_KAFKA_SSL_CHECK_HOSTNAME", "false")
    kafka = load_settings().kafka
    assert (kafka.ssl_certfile, kafka.ssl_keyfile, kafka.ssl_check_hostname) == (cert, key, False)


@pytest.mark.usefixtures("clean_env")
def test_incomplete_or_misplaced_client_certificates_are_rejected(pem: tuple[Path, Path]) -> None:
    cert, key = pem
    with pytest.raises(ValidationError, match="needs TLS"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
                      sasl_password=SecretStr("p"), ssl_certfile=cert)
    with pytest.raises(ValidationError, match="MODCASCADE_KAFKA_SSL_CERTFILE"):
        KafkaSettings(security_protocol="SSL", ssl_keyfile=key)


async def test_every_client_factory_uses_the_connection_options(pem: tuple[Path, Path]) -> None:
    cert, key = pem
    base = Settings()
    kafka = base.kafka.model_copy(update={
        "bootstrap": "kafka:9093", "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "svc", "sasl_password": SecretStr("s3cret"), "ssl_cafile": cert, "ssl_certfile": cert,
        "ssl_keyfile": key})
    settings = base.model_copy(update={"kafka": kafka})
    producer, consumer, admin = make_producer(settings), make_consumer(settings, "posts", group_id="g"), \
        make_admin(settings)
    try:
        for client in (producer.client, consumer._client, admin._client):
            assert (client._security_protocol, client._sasl_mechanism, client._sasl_plain_username,
                    client._sasl_plain_password) == ("SASL_SSL", "SCRAM-SHA-512", "svc", "s3cret")
            assert isinstance(client._ssl_context, ssl.SSLContext)
            assert client._ssl_context.check_hostname
        assert producer._txn_manager is not None, "a configured Kafka gets the idempotent producer"
    finally:
        await producer.stop()
        await consumer.stop()
        await admin.close()
