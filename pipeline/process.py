"""One managed child process: started with its output in a log file, awaited until ready, stopped for sure.

    with ManagedProcess(command, log_path=log, grace_s=5.0) as process:      # start() ... stop()
        state = process.wait_ready(lambda: server_answers(), timeout_s=30)   # or process.wait_for_line("ready")
        if state is not Readiness.READY: ...                                 # the caller raises its own error

The embedded broker (:mod:`pipeline.kafka.broker`), the model server (:mod:`pipeline.serving`) and the tests'
worker processes share this lifecycle:

- **start**: the child's stdout and stderr go to ``log_path`` (truncated, or appended with ``append_log``), never
  to the terminal; stdin is closed. With ``own_group`` (the default) the child leads a new session and process
  group, so Ctrl-C in a terminal reaches only us, and :meth:`stop` reaches the child's own children too.
- **wait**: :meth:`wait_ready` polls a predicate until it holds, the child exits, or the time is up, and says
  which (a :class:`Readiness`): the caller turns that into its own error, which quotes :meth:`log_tail`.
- **stop**: SIGTERM, then SIGKILL after ``grace_s``; the child is always reaped. With ``own_group`` the whole
  group is signalled, and what is left of it after the leader exited is killed after a short wait.

Not thread-safe: start and stop one process from one thread.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

LOG_TAIL_LINES = 15
_GROUP_EXIT_WAIT_S = 5.0


class Readiness(enum.Enum):
    """How waiting for a child ended."""

    READY = "ready"
    EXITED = "exited"  # the child exited first: :attr:`ManagedProcess.returncode` says how
    TIMED_OUT = "timed out"


class ManagedProcess:
    """One child process; see the module docstring. ``start()`` raises ``OSError`` when the command cannot run."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        grace_s: float = 5.0,
        own_group: bool = True,
        append_log: bool = False,
    ) -> None:
        self.command = list(command)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.grace_s = grace_s
        self.own_group = own_group
        self.append_log = append_log
        self.returncode: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's pid (with ``own_group`` also its process group id), while it is started."""
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self.poll() is None

    def start(self) -> Self:
        """Start the child (once; a started process is left as it is)."""
        if self._popen is not None:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.returncode = None
        # The child keeps its own copy of the log fd; ours is closed at once, so nothing leaks.
        with self.log_path.open("ab" if self.append_log else "wb") as log:
            self._popen = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                cwd=self.cwd, start_new_session=self.own_group,
            )
        return self

    def poll(self) -> int | None:
        """The exit code once the child has exited (it is reaped then), else None."""
        if self._popen is not None and self.returncode is None:
            self.returncode = self._popen.poll()
        return self.returncode

    def wait(self, timeout_s: float | None = None) -> int:
        """Wait for the child to exit by itself; ``subprocess.TimeoutExpired`` after ``timeout_s``."""
        if self._popen is None:
            raise RuntimeError(f"{self!r} was never started")
        self.returncode = self._popen.wait(timeout=timeout_s)
        return self.returncode

    def wait_ready(self, ready: Callable[[], bool], *, timeout_s: float, poll_s: float = 0.1) -> Readiness:
        """Poll ``ready()`` every ``poll_s`` until it holds, the child exits, or ``timeout_s`` passes.

        An exited child wins over a true predicate: a process that answered once and died is not ready."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.poll() is not None:
                return Readiness.EXITED
            if ready():
                return Readiness.READY if self.poll() is None else Readiness.EXITED
            if time.monotonic() >= deadline:
                return Readiness.TIMED_OUT
            time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))

    def wait_for_line(self, pattern: str | re.Pattern[str], *, timeout_s: float, poll_s: float = 0.05) -> Readiness:
        """:meth:`wait_ready` on a line of the log: ``pattern`` (a regular expression) matches at a line start."""
        regex = re.compile(pattern, re.MULTILINE) if isinstance(pattern, str) else pattern
        return self.wait_ready(lambda: regex.search(self.log_text()) is not None, timeout_s=timeout_s, poll_s=poll_s)

    def stop(self, grace_s: float | None = None) -> int | None:
        """SIGTERM the child (its group), SIGKILL it after ``grace_s`` (default: the constructor's), reap it.

        Returns its exit code (negative: the signal that ended it); None when it was never started. Safe to
        call twice, and after the child exited by itself."""
        popen, self._popen = self._popen, None
        if popen is None:
            return self.returncode
        grace = self.grace_s if grace_s is None else grace_s
        if popen.poll() is None:
            self._signal(popen, signal.SIGTERM)
            try:
                popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal(popen, signal.SIGKILL)
                popen.wait()
        if self.own_group:
            # The leader is gone; its children (an engine core, workers) may outlive it by a moment.
            deadline = time.monotonic() + min(grace, _GROUP_EXIT_WAIT_S)
            while _group_alive(popen.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            _kill_group(popen.pid, signal.SIGKILL)
        self.returncode = popen.returncode
        return self.returncode

    def log_text(self) -> str:
        """Everything the child wrote so far (empty when there is no log yet)."""
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the child's output."""
        return "\n".join(self.log_text().strip().splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}" if self.returncode is not None else "idle"
        return f"<ManagedProcess {self.command[0]!r} pid={self.pid} {state} log={self.log_path}>"

    def _signal(self, popen: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        if self.own_group:
            _kill_group(popen.pid, sig)
        else:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(sig)


def _kill_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now, for a child process to listen on (another process may still take it
    before the child binds it: callers retry where that matters)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
