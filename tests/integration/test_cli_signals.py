"""`modcascade broker` stops its embedded broker on Ctrl-C and on SIGTERM: nothing is left running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from pipeline.process import free_port
from pipeline.settings import Settings

pytestmark = pytest.mark.broker



def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_broker_command_stops_the_embedded_broker_on(sig: signal.Signals, kafka_settings: Settings) -> None:
    if not kafka_settings.uses_embedded_broker:
        pytest.skip("starts an embedded broker of its own")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODCASCADE_") and k != "KAFKA_BOOTSTRAP"}
    env["MODCASCADE_BROKER_PORT"] = str(port)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "broker"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Ctrl-C to stop" in line:
                break
        assert _port_open(port)
        proc.send_signal(sig)
        assert proc.wait(timeout=20) in (130, 0)
        deadline = time.monotonic() + 10
        while _port_open(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _port_open(port), "the embedded broker outlived the command"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
