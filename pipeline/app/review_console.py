"""The review console next to the main job (``modcascade run --review``): ``modcascade review`` as a managed child
process on the same broker and settings, its URL and a sign-in hint printed, stopped with the job.

A child process rather than a task in the job's event loop: the console has its own web server, database threads
and signal handling, and its output goes to a log file (``runs/latest/review.log``) instead of the live summary.
It is stopped with SIGTERM, which the console handles like Ctrl-C (the web server, the queue consumer and the
outbox stop; the consumer leaves its group), before the job stops the broker.

Whether it runs: ``wanted`` True starts it and fails the job when it cannot start; False never starts it; None
(the default) starts it when reviewers are configured (``MODCASCADE_REVIEW_USERS``) and only warns when it cannot
start, and otherwise prints how to add a reviewer.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from pipeline.errors import ModcascadeError, SettingsError
from pipeline.process import ManagedProcess, Readiness
from pipeline.review.auth import parse_users
from pipeline.settings import Settings

START_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0
_URL_LINE = re.compile(r"^review console: (http://\S+)", re.MULTILINE)
HOW_TO_ADD = ("add a reviewer with `modcascade review add-user NAME`, put the printed entry in "
              "MODCASCADE_REVIEW_USERS and a random MODCASCADE_REVIEW_SECRET in the environment "
              "(docs/review-console.md), then `make run` starts the console too")


@dataclass
class RunningConsole:
    """A started console: where it listens, who may sign in, and its process (for :meth:`stop`)."""

    url: str
    reviewers: list[str]
    process: ManagedProcess

    @property
    def note(self) -> str:
        return f"review console: {self.url} (sign in as a reviewer: {', '.join(self.reviewers)})"

    async def stop(self) -> int | None:
        """SIGTERM the console, SIGKILL it after :data:`STOP_GRACE_S`; returns its exit code (0: a clean stop)."""
        return await asyncio.to_thread(self.process.stop)


async def start_review_console(console: Console, settings: Settings, *, wanted: bool | None, log_path: Path,
                               timeout_s: float = START_TIMEOUT_S) -> RunningConsole | None:
    """Start the console as ``wanted`` says (module docstring) and print where it is; None when it is not running.

    Raises :class:`SettingsError` (the console's own message, from its log) when ``wanted`` is True and it does not
    start."""
    users = settings.review.users
    if wanted is False:
        return None
    if users is None:
        if wanted:
            raise SettingsError(f"the review console has no reviewers: {HOW_TO_ADD}")
        console.print(f"review console: off; to start it with the job, {HOW_TO_ADD}", highlight=False)
        return None
    try:
        reviewers = list(parse_users(users.get_secret_value()))
        running = await _start(settings, reviewers, log_path, timeout_s)
    except ModcascadeError as exc:
        if wanted:
            raise
        console.print(f"[yellow]review console not started:[/] {exc}", highlight=False)
        return None
    console.print(f"{running.note}; log: {log_path}", highlight=False)
    return running


async def _start(settings: Settings, reviewers: list[str], log_path: Path, timeout_s: float) -> RunningConsole:
    process = ManagedProcess([sys.executable, "-m", "pipeline.cli", "review"], log_path=log_path,
                             env=settings.child_env(os.environ), grace_s=STOP_GRACE_S)
    try:
        process.start()
        state = await asyncio.to_thread(process.wait_for_line, _URL_LINE, timeout_s=timeout_s)
        if state is not Readiness.READY:
            raise SettingsError(_failure(process, state, timeout_s))
        found = _URL_LINE.search(process.log_text())
        assert found is not None  # the line wait_for_line saw
        return RunningConsole(url=found.group(1), reviewers=reviewers, process=process)
    except BaseException:
        await asyncio.to_thread(process.stop)
        raise


def _failure(process: ManagedProcess, state: Readiness, timeout_s: float) -> str:
    tail = process.log_tail()
    if state is Readiness.EXITED and "error: " in tail:
        # The console's own message (it names the setting and the fix), re-joined where the terminal width wrapped it.
        return " ".join(tail.rsplit("error: ", 1)[1].split())
    what = f"exited with code {process.returncode}" if state is Readiness.EXITED else \
        f"printed no URL within {timeout_s:.0f} s"
    return (f"`modcascade review` {what} (log: {process.log_path}); a busy port? set MODCASCADE_REVIEW_PORT. "
            f"Its last lines:\n{tail}")

