"""The embedded broker starts on a free port, speaks Kafka, stops cleanly, and fails with errors that say
what to do."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline.errors import EmbeddedBrokerError
from pipeline.kafka import EmbeddedBroker
from pipeline.settings import Settings
from tests.support.kafka import read_records, unique

pytestmark = pytest.mark.broker


@pytest.fixture
def embedded_only(kafka_settings: Settings) -> None:
    if not kafka_settings.uses_embedded_broker:
        pytest.skip("checks the embedded broker's failure modes; KAFKA_BOOTSTRAP points at a real Kafka")


@pytest.fixture
def listening_socket() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fake-tansu"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


async def test_starts_on_a_free_port_round_trips_and_stop_frees_the_port(tmp_path: Path) -> None:
    fds = _open_fds()
    broker = EmbeddedBroker(port=0, log_path=tmp_path / "tansu.log").start()
    try:
        assert broker.running and broker.port != 0
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        topic = unique("broker-roundtrip")
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello", key=b"k")  # tansu creates the topic on first use
        finally:
            await producer.stop()
        await consumer.start()
        try:
            [record] = await read_records(consumer, 1)
        finally:
            await consumer.stop()
        assert (record.key, record.value) == (b"k", b"hello")
    finally:
        broker.stop()
    assert not broker.running
    assert "ready" in (tmp_path / "tansu.log").read_text()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # what a restarted broker would do
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", broker.port))
    assert _open_fds() == fds


def test_works_as_a_context_manager_and_restarts_on_the_same_port(tmp_path: Path) -> None:
    with EmbeddedBroker(port=0, log_path=tmp_path / "first.log") as first:
        port = first.port
    with EmbeddedBroker(port=port, log_path=tmp_path / "second.log") as second:
        assert second.running and second.bootstrap == f"127.0.0.1:{port}"
    assert not second.running


@pytest.mark.usefixtures("embedded_only")
def test_a_missing_binary_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedBrokerError, match="MODCASCADE_BROKER_BINARY"):
        EmbeddedBroker(port=0, binary=tmp_path / "no-such-tansu").start()


@pytest.mark.usefixtures("embedded_only")
def test_a_binary_that_dies_reports_its_output(tmp_path: Path) -> None:
    binary = _script(tmp_path, 'echo "tansu: cannot open storage" >&2\nexit 3')
    with pytest.raises(EmbeddedBrokerError, match="exited with code 3") as info:
        EmbeddedBroker(port=0, binary=binary, log_path=tmp_path / "b.log").start()
    assert "tansu: cannot open storage" in str(info.value)


@pytest.mark.usefixtures("embedded_only")
def test_a_port_in_use_names_the_fix_and_quotes_the_broker(tmp_path: Path, listening_socket: int) -> None:
    fds = _open_fds()
    broker = EmbeddedBroker(port=listening_socket, log_path=tmp_path / "b.log")
    with pytest.raises(EmbeddedBrokerError, match="already in use") as info:
        broker.start()
    message = str(info.value)
    assert "MODCASCADE_BROKER_PORT" in message
    assert "Address in use" in message  # the tail of tansu's own output
    assert not broker.running
    assert _open_fds() == fds


@pytest.mark.usefixtures("embedded_only")
def test_a_broker_that_never_gets_ready_is_stopped_and_reported(tmp_path: Path) -> None:
    binary = _script(tmp_path, 'echo "starting, slowly"\nexec sleep 30')
    broker = EmbeddedBroker(port=0, binary=binary, startup_timeout_s=0.5, log_path=tmp_path / "b.log")
    with pytest.raises(EmbeddedBrokerError, match="did not become ready") as info:
        broker.start()
    assert "MODCASCADE_BROKER_STARTUP_TIMEOUT_S" in str(info.value)
    assert "starting, slowly" in str(info.value)
    assert not broker.running
