"""The reliability bench with the scripted frontier: ``modcascade bench --suites reliability`` whose adjudicate
worker talks to a :class:`MessagesServer` started here (the real Anthropic API is never called by a chaos run).

    .venv/bin/python -m tests.support.reliability [any `modcascade bench` option]

runs ``modcascade bench --suites reliability --frontier-url <the scripted server> OPTIONS`` in this process, the
server in a thread of its own. The scripted frontier decides each post from a hash of its text, so a post
adjudicated twice (a replay after a kill) gets the same decision both times.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from tests.support.frontier import MessagesServer, Reply, user_text


def chaos_verdict(body: Mapping[str, Any]) -> Reply:
    """A deterministic frontier answer per post: about a third spam (block), the rest safe (allow)."""
    if zlib.crc32(user_text(body).encode()) % 3 == 0:
        return Reply.tool({"category": "spam", "decision": "block", "rationale": "Scripted: promotion."})
    return Reply.tool({"category": "safe", "decision": "allow", "rationale": "Scripted: nothing wrong."})


class FrontierThread:
    """A :class:`MessagesServer` answering :func:`chaos_verdict`, on an event loop in a thread of its own."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="scripted-frontier", daemon=True)
        self._server = MessagesServer(default=chaos_verdict)

    def __enter__(self) -> str:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._server.start(), self._loop).result(timeout=30)
        return self._server.url

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


def main(argv: Sequence[str]) -> None:
    from pipeline.cli import main as cli_main

    with FrontierThread() as url:
        cli_main(["bench", "--suites", "reliability", "--frontier-url", url, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
