"""``modcascade review``: the console in one process (the database, the consumer that fills the queues, the outbox
that publishes decisions, and the web server), and the helpers behind ``review add-user`` and ``review migrate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from datetime import timedelta

import uvicorn

from pipeline.errors import SettingsError
from pipeline.kafka.clients import make_consumer, make_producer, start_client
from pipeline.kafka.stream import Batching, StreamLoop
from pipeline.kafka.topics import ensure_topics
from pipeline.policy import load_policy
from pipeline.records import utcnow
from pipeline.review.auth import parse_users
from pipeline.review.db import current_revision, make_engine, upgrade
from pipeline.review.ingest import SOURCE_ROLES, IngestStage
from pipeline.review.outbox import drain_outbox
from pipeline.review.store import ReviewStore
from pipeline.review.web import create_app
from pipeline.settings import Settings

log = logging.getLogger(__name__)
PRUNE_EVERY = timedelta(minutes=10)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the console stops everything on SIGINT/SIGTERM itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _required(settings: Settings) -> tuple[str, dict[str, str]]:
    r = settings.review
    if r.secret is None or len(r.secret.get_secret_value()) < 16:
        raise SettingsError("MODCASCADE_REVIEW_SECRET must be set to a random string of 16+ characters (it signs "
                            "the session cookies), e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    if r.users is None:
        raise SettingsError("MODCASCADE_REVIEW_USERS is not set: add reviewers with `modcascade review add-user "
                            "NAME` (the console has no open access)")
    return r.secret.get_secret_value(), parse_users(r.users.get_secret_value())


def migrate(settings: Settings) -> tuple[str | None, str | None]:
    """Bring the database to the newest schema; returns (revision before, revision after)."""
    engine = make_engine(settings.review.database_url)
    try:
        before = current_revision(engine)
        upgrade(engine)
        return before, current_revision(engine)
    finally:
        engine.dispose()


async def serve_console(settings: Settings, say: Callable[[str], None], *, host: str | None = None,
                        port: int | None = None) -> None:
    """Run the console until SIGINT/SIGTERM. ``say`` gets the URL once the server listens, and a line once the
    consumer group has assigned partitions (the queues are filling)."""
    secret, users = _required(settings)
    r = settings.review
    policy = load_policy(settings.policy_path)
    store = await asyncio.to_thread(ReviewStore.open, r, safe=policy.taxonomy.safe)
    topics = settings.topics.all()
    loop = asyncio.get_running_loop()
    stop, wake = asyncio.Event(), asyncio.Event()

    def decided() -> None:  # called from the web app's worker threads
        loop.call_soon_threadsafe(wake.set)

    app = create_app(store, policy, users, secret=secret, secure_cookie=r.secure_cookie, on_decided=decided)
    sock = socket.socket(socket.AF_INET6 if ":" in (host or r.host) else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    producer = make_producer(settings)
    consumer = make_consumer(settings, group_id=r.group_id)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        sock.bind((host or r.host, r.port if port is None else port))
        sock.listen(128)  # connections wait in the backlog until the server accepts them
        await ensure_topics(settings, [topics[role] for role in SOURCE_ROLES])
        await start_client(producer, settings, "review producer")
        await start_client(consumer, settings, "review consumer")
        stream = StreamLoop(consumer, producer, IngestStage(store, topics), topics,
                            batching=Batching(max_records=1000, max_wait_s=0.2), group_id=r.group_id,
                            batch_bytes=settings.kafka.batch_size,
                            on_assigned=lambda: say("review queues: consuming "
                                                    + ", ".join(topics[role] for role in SOURCE_ROLES)))
        stream.subscribe(*(topics[role] for role in SOURCE_ROLES))

        async def web() -> None:
            await server.serve(sockets=[sock])
            stop.set()

        async def stopper() -> None:
            await stop.wait()
            server.should_exit = True

        async def prune() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), PRUNE_EVERY.total_seconds())
                if not stop.is_set():
                    await asyncio.to_thread(store.prune, utcnow())

        bound_host, bound_port = sock.getsockname()[:2]
        async with asyncio.TaskGroup() as group:
            group.create_task(web(), name="review-web")
            group.create_task(stopper(), name="review-stopper")
            group.create_task(stream.run(stop), name="review-ingest")
            group.create_task(drain_outbox(store, producer, topics, stop, wake), name="review-outbox")
            group.create_task(prune(), name="review-prune")
            say(f"review console: http://{'[' + bound_host + ']' if ':' in bound_host else bound_host}:{bound_port}/")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await consumer.stop()
        await producer.stop()
        sock.close()
        store.close()
