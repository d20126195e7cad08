"""`modcascade run --review`: the main job's review console part (pipeline/app/review_console.py) on the embedded
broker. Started as a child process with the job's settings, it prints its URL, serves the sign-in page there (and
nothing else without a sign-in), fills its queues from the job's topics, and stops cleanly; without reviewers the
job says how to add one; a console that cannot start fails an explicit ``--review`` and only warns by default.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from rich.console import Console

from pipeline.app.review_console import start_review_console
from pipeline.errors import SettingsError
from pipeline.process import Readiness
from pipeline.review.auth import hash_password
from pipeline.settings import ReviewSettings, Settings
from tests.support.kafka import TopicFactory, unique
from tests.support.review import SECRET

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]


async def job_settings(kafka_settings: Settings, topic_factory: TopicFactory, tmp_path: Path,
                       **review: object) -> Settings:
    """The main job's settings on the test broker, with fresh topics for the console to read."""
    topics = kafka_settings.topics.model_copy(update={
        role: await topic_factory(f"mainjob-review-{role}") for role in ("posts", "verdicts", "labels")})
    kafka = kafka_settings.kafka.model_copy(update={"session_timeout_ms": 2000, "heartbeat_interval_ms": 300})
    fields: dict[str, object] = {"database_url": f"sqlite:///{tmp_path / 'review.db'}", "secret": SECRET,
                                 "port": 0, "group_id": unique("mainjob-review"), **review}
    return kafka_settings.model_copy(update={"topics": topics, "kafka": kafka,
                                             "review": ReviewSettings.model_validate(fields)})


def get(url: str, path: str) -> tuple[int, dict[str, str], str]:
    """One GET without following redirects: status, headers (lower-case names), body."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode("utf-8", "replace")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, color_system=None), out


async def test_the_job_starts_the_console_prints_its_url_and_stops_it_cleanly(
    kafka_settings: Settings, topic_factory: TopicFactory, tmp_path: Path,
) -> None:
    users = f"alice:{hash_password('alice-pw', log2_n=12)},bob:{hash_password('bob-pw', log2_n=12)}"
    settings = await job_settings(kafka_settings, topic_factory, tmp_path, users=users)
    console, out = terminal()
    log = tmp_path / "review.log"
    running = await start_review_console(console, settings, wanted=None, log_path=log)  # on: reviewers configured
    assert running is not None
    try:
        printed = out.getvalue()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", running.url)
        assert f"review console: {running.url} (sign in as a reviewer: alice, bob); log: {log}" in printed
        assert running.url in running.note

        status, _, page = await asyncio.to_thread(get, running.url, "/login")
        assert status == 200
        assert 'name="username"' in page and 'name="password"' in page and 'name="csrf"' in page
        status, headers, _ = await asyncio.to_thread(get, running.url, "/")
        assert (status, headers["location"]) == (303, "/login")  # no open console
        assert (await asyncio.to_thread(get, running.url, "/healthz"))[::2] == (200, "ok")

        # It reads the job's topics on the job's broker, as its consumer group.
        topics = settings.topics.all()
        wanted = f"review queues: consuming {topics['posts']}, {topics['verdicts']}, {topics['labels']}"
        state = await asyncio.to_thread(running.process.wait_for_line, re.escape(wanted), timeout_s=60)
        assert state is Readiness.READY, log.read_text()
    finally:
        code = await running.stop()
    assert code == 0, log.read_text()  # SIGTERM is a clean stop, not a kill
    assert "Traceback" not in log.read_text()
    with pytest.raises(OSError):
        await asyncio.to_thread(get, running.url, "/healthz")


async def test_without_reviewers_the_job_says_how_to_add_one(
    kafka_settings: Settings, topic_factory: TopicFactory, tmp_path: Path,
) -> None:
    settings = await job_settings(kafka_settings, topic_factory, tmp_path)
    assert settings.review.users is None
    console, out = terminal()
    assert await start_review_console(console, settings, wanted=None, log_path=tmp_path / "review.log") is None
    assert "review console: off" in out.getvalue()
    assert "modcascade review add-user NAME" in out.getvalue()
    assert not (tmp_path / "review.log").exists(), "nothing was started"

    console, out = terminal()
    assert await start_review_console(console, settings, wanted=False, log_path=tmp_path / "review.log") is None
    assert out.getvalue() == ""
    with pytest.raises(SettingsError, match=r"modcascade review add-user NAME"):
        await start_review_console(console, settings, wanted=True, log_path=tmp_path / "review.log")


async def test_a_console_that_cannot_start_fails_review_and_only_warns_by_default(
    kafka_settings: Settings, topic_factory: TopicFactory, tmp_path: Path,
) -> None:
    settings = await job_settings(kafka_settings, topic_factory, tmp_path,
                                  users=f"alice:{hash_password('alice-pw', log2_n=12)}", secret="too-short")
    with pytest.raises(SettingsError, match=r"MODCASCADE_REVIEW_SECRET must be set to a random string"):
        await start_review_console(Console(file=io.StringIO()), settings, wanted=True,
                                   log_path=tmp_path / "explicit.log")

    console, out = terminal()
    assert await start_review_console(console, settings, wanted=None, log_path=tmp_path / "auto.log") is None
    assert "review console not started: MODCASCADE_REVIEW_SECRET must be set" in out.getvalue()
