"""The policy in force for one file, reloaded when the file changes.

Readers take ``store.current`` once per batch and use that object throughout: a swap replaces the
attribute with another immutable :class:`Policy` in one assignment, so a reader sees the old policy or
the new one, never a mix. An invalid edit never replaces a good policy; it is logged, kept in
``last_error`` and shown by the ``modcascade_policy_file_valid`` gauge until the file is fixed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from watchfiles import Change, awatch

from pipeline.errors import ModcascadeError, PolicyError
from pipeline.metrics import Metrics
from pipeline.policy.load import load_policy
from pipeline.policy.model import Policy

log = logging.getLogger(__name__)

OnChange = Callable[[Policy], None]
Accept = Callable[[Policy], None]
"""Extra check a new policy must pass before it is swapped in (raise ModcascadeError to reject it), e.g.
that the served model emits the new taxonomy."""


class PolicyStore:
    """Holds the current policy of ``path``; constructing it with an invalid file raises PolicyError."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        metrics: Metrics | None = None,
        on_change: Iterable[OnChange] = (),
        accept: Accept | None = None,
    ) -> None:
        self.path = Path(path)
        self.metrics = metrics
        self.last_error: ModcascadeError | None = None
        self._callbacks = list(on_change)
        self._accept = accept
        self._current = load_policy(self.path)  # startup fails loudly: there is no last good policy yet
        if accept is not None:
            accept(self._current)
        self._publish(self._current)

    @property
    def current(self) -> Policy:
        return self._current

    def on_change(self, callback: OnChange) -> None:
        """Call ``callback(new_policy)`` after each swap. A failing callback is logged, not raised."""
        self._callbacks.append(callback)

    def reload(self) -> bool:
        """Re-read the file; swap and return True if it is valid and its content (version) changed."""
        try:
            policy = load_policy(self.path)
            if self._accept is not None and policy.version != self._current.version:
                self._accept(policy)
        except ModcascadeError as exc:
            self.last_error = exc
            if self.metrics:
                self.metrics.policy_valid.set(0)
                self.metrics.policy_reload_errors.inc()
            problems = exc.issues if isinstance(exc, PolicyError) else [f"{self.path}: {exc}"]
            for issue in problems:
                log.error("policy edit rejected, keeping version %s: %s", self._current.version, issue)
            return False
        self.last_error = None
        if self.metrics:
            self.metrics.policy_valid.set(1)
        if policy.version == self._current.version:
            return False
        old, self._current = self._current, policy
        if self.metrics:
            self.metrics.policy_reloads.inc()
        self._publish(policy)
        log.info("policy %s reloaded: version %s -> %s", policy.name, old.version, policy.version)
        for callback in self._callbacks:
            try:
                callback(policy)
            except Exception:
                log.exception("policy on-change callback %r failed", callback)
        return True

    async def watch(self, stop: asyncio.Event, *, debounce_ms: int = 400) -> None:
        """Reload whenever the file changes, until ``stop`` is set.

        The parent directory is watched, not the file: editors save by writing a new file and renaming
        it over the old one, which a watch on the old file would miss. Kubernetes ConfigMap volumes
        swap a ``..data`` symlink instead, so a change to that also counts. Reading is a few
        milliseconds of blocking I/O on a small file, done in the loop on purpose.
        """
        directory, name = self.path.parent.resolve(), self.path.name

        def relevant(_change: Change, changed: str) -> bool:
            return Path(changed).name in {name, "..data"}

        self.reload()  # catch edits made between construction and the start of the watch
        async for _ in awatch(directory, watch_filter=relevant, stop_event=stop, debounce=debounce_ms,
                              recursive=False):
            self.reload()

    def _publish(self, policy: Policy) -> None:
        if self.metrics:
            self.metrics.policy_info.info({"name": policy.name, "version": policy.version})
            self.metrics.policy_valid.set(1)
