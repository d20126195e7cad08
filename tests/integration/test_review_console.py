"""The review console end to end: the real `modcascade review` process on the embedded broker, driven by a
reviewer in a real browser (Debian's Chromium through Playwright; `make system-deps` installs it).

A reviewer signs in, claims an item and decides it with the keyboard; the label and the superseding verdict
appear on the topics; a second reviewer cannot take the claimed item; a post made of HTML and script renders as
inert text; the console killed mid-review (SIGKILL) loses neither claim nor decision. With
``REVIEW_SCREENSHOTS=docs/images`` the test also saves the screenshots used in docs/review-console.md.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from pipeline import codec
from pipeline.records import Label, Verdict
from pipeline.review.auth import hash_password
from pipeline.settings import Settings
from tests.support import REPO
from tests.support.kafka import ConsumerFactory, ProducerFactory, TopicFactory, unique
from tests.support.review import SECRET, post, verdict

pytestmark = [pytest.mark.broker, pytest.mark.browser, pytest.mark.timeout(240)]

CHROMIUM = Path("/usr/bin/chromium")
XSS = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2"><b>not bold</b> & friends'
KEYS = {"safe": "1", "spam": "2", "harassment": "3"}  # policies/default.yaml: safe, then the taxonomy's order


@dataclass
class Console:
    env: dict[str, str]
    log: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    url: str = ""

    def start(self) -> str:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "review", "--port", str(self.port)],
                                            env=self.env, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            if found := re.search(r"review console: (http://\S+)", text):
                self.url = found.group(1).rstrip("/")
                return self.url
            assert self.process.poll() is None, f"the console exited:\n{text}"
            time.sleep(0.1)
        raise AssertionError(f"the console printed no URL:\n{self.log.read_text()}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run `make system-deps` (installs Debian's chromium)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield b
        await b.close()


async def sign_in(browser: Browser, url: str, name: str, password: str) -> Page:
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    await page.goto(url + "/")
    await expect(page).to_have_url(url + "/login")
    await page.fill("input[name=username]", name)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Queues")
    return page


async def read_until(consumer: object, wanted: int, kind: type[Label] | type[Verdict], timeout_s: float = 30.0,
                     ) -> list[Label] | list[Verdict]:
    found: list = []  # type: ignore[type-arg]
    async with asyncio.timeout(timeout_s):
        while len(found) < wanted:
            for batch in (await consumer.getmany(timeout_ms=200)).values():  # type: ignore[attr-defined]
                found.extend(codec.decode(r.value, kind) for r in batch)
    return found


async def test_a_reviewer_decides_with_the_keyboard_and_a_restart_loses_nothing(
    kafka_settings: Settings, topic_factory: TopicFactory, producer_factory: ProducerFactory,
    consumer_factory: ConsumerFactory, browser: Browser, tmp_path: Path, spawn: list[subprocess.Popen[bytes]],
) -> None:
    topics = {role: await topic_factory(f"review-{role}") for role in ("posts", "verdicts", "labels")}
    env = kafka_settings.child_env(os.environ)
    env.update({
        "MODCASCADE_TOPIC_POSTS": topics["posts"], "MODCASCADE_TOPIC_VERDICTS": topics["verdicts"],
        "MODCASCADE_TOPIC_LABELS": topics["labels"], "MODCASCADE_REVIEW_GROUP_ID": unique("review"),
        "MODCASCADE_REVIEW_DATABASE_URL": f"sqlite:///{tmp_path / 'review.db'}", "MODCASCADE_REVIEW_SECRET": SECRET,
        "MODCASCADE_REVIEW_USERS": f"alice:{hash_password('alice-pw', log2_n=12)},"
                                   f"bob:{hash_password('bob-pw', log2_n=12)}",
        "MODCASCADE_REVIEW_QA_SAMPLE_RATE": "0", "MODCASCADE_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "MODCASCADE_KAFKA_HEARTBEAT_INTERVAL_MS": "200",
    })
    hostile = verdict("post-hostile", decision="review", category="harassment")
    plain = verdict("post-plain", decision="review", category="spam")
    producer = await producer_factory()
    for p in (post("post-hostile", XSS), post("post-plain", "buy cheap watches at example dot com")):
        await producer.send_and_wait(topics["posts"], codec.encode(p), key=p.id.encode())
    for v in (hostile, plain):
        await producer.send_and_wait(topics["verdicts"], codec.encode(v), key=v.post_id.encode())
    labels = await consumer_factory(topics["labels"])
    verdicts = await consumer_factory(topics["verdicts"])
    await read_until(verdicts, 2, Verdict)  # the two verdicts we published

    with socket.socket() as probe:  # a free port, kept across restarts
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    console = Console(env, tmp_path / "console.log", port)
    shots = Path(os.environ["REVIEW_SCREENSHOTS"]) if os.environ.get("REVIEW_SCREENSHOTS") else tmp_path / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        url = console.start()
        assert console.process is not None
        spawn.append(console.process)
        login = await (await browser.new_context()).new_page()
        await login.goto(url + "/login")
        await login.fill("input[name=username]", "alice")
        await login.screenshot(path=str(shots / "review-login.png"))
        await login.context.close()

        alice = await sign_in(browser, url, "alice", "alice-pw")
        deadline = time.monotonic() + 30
        while await alice.locator("table.items tbody tr").count() < 2:  # the consumer fills the queue
            assert time.monotonic() < deadline, "the queue never filled"
            await asyncio.sleep(0.5)
            await alice.reload()
        await alice.screenshot(path=str(shots / "review-queue.png"), full_page=True)

        # Alice claims the first item with the keyboard: the hostile post, rendered as inert text.
        await alice.keyboard.press("n")
        await expect(alice.locator("#decide-form")).to_be_visible()
        hostile_url = alice.url
        assert await alice.locator("#post-text").inner_text() == XSS
        assert await alice.locator("#post-text script, #post-text img, #post-text b").count() == 0
        assert await alice.evaluate("window.__pwned") is None
        await alice.screenshot(path=str(shots / "review-item.png"), full_page=True)

        # Bob cannot take Alice's item; claim-next gives him the other one.
        bob = await sign_in(browser, url, "bob", "bob-pw")
        await bob.goto(hostile_url)
        await expect(bob.locator("p.claimed")).to_contain_text("Claimed by alice")
        assert await bob.locator("#decide-form").count() == 0
        await bob.goto(url + "/")
        await bob.keyboard.press("n")
        await expect(bob.locator("#decide-form")).to_be_visible()
        plain_url = bob.url
        assert plain_url != hostile_url and "cheap watches" in await bob.locator("#post-text").inner_text()

        # Alice decides with the keyboard: harassment (3), block (b), Enter. The outcome changes: review → block.
        await alice.keyboard.press(KEYS["harassment"])
        await alice.keyboard.press("b")
        await alice.keyboard.press("Enter")
        await expect(alice.locator(".flash")).to_contain_text("decided: block, harassment (the verdict changes)")
        (label,) = await read_until(labels, 1, Label)
        assert (label.post_id, label.source, label.label, label.verdict_id) == (
            "post-hostile", "human", "harassment", hostile.verdict_id)
        assert label.text == XSS
        (superseding,) = await read_until(verdicts, 1, Verdict)
        assert (superseding.post_id, superseding.route, superseding.decision, superseding.category) == (
            "post-hostile", "human", "block", "harassment")
        assert superseding.supersedes == hostile.verdict_id

        # The console dies mid-review (Bob holds a claim); after the restart (same port, so Bob's session cookie
        # still holds) nothing is lost.
        console.kill()
        assert console.start() == url
        spawn.append(console.process)
        await bob.goto(plain_url)
        await expect(bob.locator("#decide-form")).to_be_visible()  # his claim survived
        await bob.goto(hostile_url)
        await expect(bob.locator("table.history")).to_contain_text("alice")  # her decision survived
        await bob.goto(plain_url)

        # Bob allows the plain post (safe: 1, allow: a) and the console is killed right after the decision: the
        # outbox publishes it after the restart if it had not yet.
        await bob.keyboard.press(KEYS["safe"])
        await bob.keyboard.press("a")
        await bob.keyboard.press("Enter")
        await expect(bob.locator(".flash")).to_contain_text("decided: allow, safe (the verdict changes)")
        console.kill()
        assert console.start() == url
        spawn.append(console.process)
        got = await read_until(verdicts, 1, Verdict)
        first = got[0]
        assert (first.post_id, first.route, first.decision, first.supersedes) == (
            "post-plain", "human", "allow", plain.verdict_id)
        got_labels = await read_until(labels, 1, Label)
        assert got_labels[0].post_id == "post-plain" and got_labels[0].label == "safe"

        stats = await sign_in(browser, url, "alice", "alice-pw")
        await stats.goto(url + "/stats")
        await expect(stats.locator("table.stats")).to_contain_text("alice")
        await expect(stats.locator("table.stats")).to_contain_text("bob")
        await stats.screenshot(path=str(shots / "review-stats.png"), full_page=True)
    finally:
        console.stop()
