"""The batch run's escalations end to end through the real ``anthropic`` SDK against our scripted Messages API
server: urgent ones adjudicated at once, deferrable ones in Message Batches (create, poll, results), with
partial failures and expiry, stopped and resumed without losing a post or paying twice.

The small model is the in-package fake here (scores chosen by a marker in the text): the classifier is not
under test; ``test_batch_cli.py`` runs the real model.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from rich.console import Console

from pipeline import codec
from pipeline.adjudication.anthropic_api import AnthropicAdjudicator
from pipeline.adjudication.message_batches import BatchState, MessageBatches
from pipeline.adjudication.outcomes import MESSAGE_BATCHES_DISCOUNT
from pipeline.adjudication.prompt import FrontierRequest
from pipeline.adjudication.stage import AdjudicationLimits, AdjudicationStage
from pipeline.backends.fake import FakeClassifier
from pipeline.batch.io import open_file_source, read_verdicts
from pipeline.batch.report import BatchReport
from pipeline.batch.runner import BatchOptions, BatchRun, Outputs
from pipeline.cascade.cache import ScoreCache
from pipeline.cascade.stage import ClassifyStage
from pipeline.metrics import Metrics
from pipeline.policy import load_policy
from pipeline.records import DeadLetter, Verdict
from pipeline.retry import Backoff
from tests.support.frontier import MessagesServer, Reply, user_text

REPO = Path(__file__).resolve().parents[2]
POLICY = load_policy(REPO / "policies" / "default.yaml")
LABELS = (POLICY.taxonomy.safe, *POLICY.taxonomy.categories)
MARKERS = {"[spam-band]": ("spam", 0.6), "[harassment-band]": ("harassment", 0.6), "[spam]": ("spam", 0.97)}


def rule(text: str) -> dict[str, float]:
    """Scores by marker: a band marker lands in that category's escalation band; no marker is clearly safe."""
    label, top = next((hit for marker, hit in MARKERS.items() if marker in text), ("safe", 0.97))
    rest = (1.0 - top) / (len(LABELS) - 1)
    return {name: top if name == label else rest for name in LABELS}


def verdict_for(body: dict[str, Any]) -> Reply:
    """The frontier agrees with the small model's candidate, per the marker in the post."""
    category = "harassment" if "[harassment-band]" in user_text(body) else "spam"
    return Reply.tool({"category": category, "decision": "block", "rationale": "matches the marker"})


def write_posts(path: Path, *, deferred: int, urgent: int, clear: int, malformed: int = 2) -> dict[str, str]:
    """Posts by id with their kind; malformed lines are appended too (they end as dead letters)."""
    kinds: dict[str, str] = {}
    lines: list[bytes] = []
    for kind, count, marker in (("deferred", deferred, "[spam-band]"), ("urgent", urgent, "[harassment-band]"),
                                ("clear", clear, "")):
        for i in range(count):
            post_id = f"{kind}-{i}"
            kinds[post_id] = kind
            lines.append(codec.dumps({"id": post_id, "text": f"post {i} of kind {kind} {marker}"}))
    lines.extend(b'{"id": "broken-%d", "text": ' % i for i in range(malformed))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return kinds


def _post_id(user_turn: str) -> str:
    found = re.search(r"post (\d+) of kind (\w+)", user_turn)
    assert found is not None, user_turn
    return f"{found[2]}-{found[1]}"


class Harness:
    def __init__(self, server: MessagesServer, tmp_path: Path) -> None:
        self.server = server
        self.posts = tmp_path / "posts.jsonl"
        self.outputs = Outputs.beside(tmp_path / "out.jsonl")
        self.metrics = Metrics.create(CollectorRegistry())
        self.closers: list[Any] = []

    async def run(self, *, wait: bool = True, batches: type[MessageBatches] = MessageBatches,
                  max_attempts: int = 2, batch_max: int = 20) -> BatchReport:
        source = open_file_source(self.posts)
        classify = ClassifyStage(FakeClassifier(LABELS, rule=rule), lambda: POLICY, cache=ScoreCache(0, 1.0),
                                 metrics=self.metrics, max_text_bytes=32_768, backoff=Backoff(0.01, 0.02))
        adjudicator = AnthropicAdjudicator(api_key="test", base_url=self.server.url, timeout_s=5.0)
        adjudicate = AdjudicationStage(adjudicator, lambda: POLICY, metrics=self.metrics,
                                       limits=AdjudicationLimits(rate_per_s=1000.0, burst=100,
                                                                 backoff=Backoff(0.01, 0.02)))
        client = batches(api_key="test", base_url=self.server.url, timeout_s=5.0)
        options = BatchOptions(outputs=self.outputs, chunk_posts=25, message_batch_max=batch_max,
                               poll_interval_s=0.05, max_deferred_attempts=max_attempts, wait=wait, progress=False)
        identity = {"input": source.identity, "policy": POLICY.version, "model": "fake-1"}
        run = BatchRun(source, POLICY, classify, options, identity=identity, adjudicate=adjudicate, batches=client,
                       metrics=self.metrics, console=Console(quiet=True), backoff=Backoff(0.01, 0.02))
        try:
            return await run.run()
        finally:
            await adjudicator.aclose()
            await client.aclose()
            await source.aclose()

    def verdicts(self) -> list[Verdict]:
        return list(read_verdicts(self.outputs.verdicts))

    def dead_letters(self) -> list[DeadLetter]:
        return [codec.decode(line, DeadLetter) for line in self.outputs.dead_letters.read_bytes().splitlines()]

    def batch_submissions(self) -> Counter[str]:
        """How often each post was submitted in a Message Batch (by the post id its text carries)."""
        return Counter(_post_id(request["params"]["messages"][0]["content"])
                       for batch in self.server.batches.values() for request in batch.requests)


@pytest.fixture
async def server() -> AsyncIterator[MessagesServer]:
    async with MessagesServer(default=verdict_for) as server:
        server.batch_polls_to_end = 1
        yield server


@pytest.fixture
def harness(server: MessagesServer, tmp_path: Path) -> Harness:
    return Harness(server, tmp_path)


def assert_each_post_once(verdicts: Sequence[Verdict], kinds: dict[str, str]) -> None:
    counts = Counter(v.post_id for v in verdicts)
    missing, extra = sorted(set(kinds) - set(counts)), sorted(set(counts) - set(kinds))
    assert not missing and not extra, f"missing {missing[:5]}, extra {extra[:5]}"
    assert max(counts.values()) == 1, f"written twice: {[k for k, n in counts.items() if n > 1][:5]}"


async def test_deferrable_escalations_go_through_message_batches_at_half_price(harness: Harness) -> None:
    kinds = write_posts(harness.posts, deferred=40, urgent=10, clear=50)
    harness.server.min_cacheable_tokens = 10**9  # no prompt caching: every call is priced alike
    report = await harness.run()

    verdicts = harness.verdicts()
    assert_each_post_once(verdicts, kinds)
    assert len(harness.dead_letters()) == 2
    by_kind = {kinds[v.post_id]: v for v in verdicts}
    assert by_kind["deferred"].route == by_kind["urgent"].route == "frontier"
    assert by_kind["clear"].route == "slm"
    direct = [v for v in verdicts if kinds[v.post_id] == "urgent"]
    batched = [v for v in verdicts if kinds[v.post_id] == "deferred"]
    # Same prompt shape, same simulated usage per post; a batched answer costs half a direct one.
    cheapest_direct = min(v.cost_usd for v in direct)
    assert max(v.cost_usd for v in batched) < cheapest_direct
    assert sum(v.cost_usd for v in batched) / len(batched) == pytest.approx(
        sum(v.cost_usd for v in direct) / len(direct) * MESSAGE_BATCHES_DISCOUNT, rel=0.05)

    assert len(harness.server.batches) == 2  # 40 deferred, 20 per batch
    assert set(harness.batch_submissions().values()) == {1}
    direct_calls = [r for r in harness.server.requests if r.path == "/v1/messages"]
    assert len(direct_calls) == 10
    assert report.complete and report.tally.message_batches == 2
    assert report.tally.escalated == {"urgent": 10, "deferred": 40}
    assert harness.outputs.labels.exists() and len(harness.outputs.labels.read_bytes().splitlines()) == 50
    assert not harness.outputs.state.exists() and harness.outputs.report.exists()


async def test_partial_failures_and_expiry_are_resubmitted_or_fall_back(harness: Harness,
                                                                        server: MessagesServer) -> None:
    kinds = write_posts(harness.posts, deferred=10, urgent=0, clear=5, malformed=0)
    server.script_batch(Reply.error(529, "overloaded_error"), Reply.error(400, "invalid_request_error"),
                        Reply.expired(), Reply.error(500, "api_error"))  # requests 1-4 of the first batch
    report = await harness.run(max_attempts=2, batch_max=10)

    verdicts = {v.post_id: v for v in harness.verdicts()}
    assert_each_post_once(list(verdicts.values()), kinds)
    rejected = [v for v in verdicts.values() if v.flags == ("frontier_rejected",)]
    assert len(rejected) == 1 and rejected[0].route == "fallback"
    assert Counter(v.route for v in verdicts.values() if kinds[v.post_id] == "deferred") == {"frontier": 9,
                                                                                             "fallback": 1}
    assert len(server.batches) == 2  # the three the service did not run went round once more, and succeeded
    assert sorted(harness.batch_submissions().values()) == [1] * 7 + [2] * 3
    assert report.tally.resubmitted == 3


async def test_a_batch_that_expires_entirely_is_resubmitted_then_falls_back(harness: Harness,
                                                                            server: MessagesServer) -> None:
    kinds = write_posts(harness.posts, deferred=6, urgent=0, clear=4, malformed=0)
    server.hold_batches = True
    run = asyncio.create_task(harness.run(max_attempts=2, batch_max=10))
    for expected in (1, 2):  # each submission expires after 24 h (simulated at once)
        while len(server.batches) < expected:
            await asyncio.sleep(0.02)
        await server.expire_batches()
    report = await asyncio.wait_for(run, timeout=30)

    verdicts = harness.verdicts()
    assert_each_post_once(verdicts, kinds)
    fallbacks = [v for v in verdicts if kinds[v.post_id] == "deferred"]
    assert {(v.route, v.flags) for v in fallbacks} == {("fallback", ("frontier_expired",))}
    assert all(v.cost_usd == 0.0 for v in fallbacks)
    assert report.tally.flags == {"frontier_expired": 6}


async def test_no_wait_leaves_batches_pending_and_the_next_run_collects_them_without_resubmitting(
        harness: Harness, server: MessagesServer) -> None:
    kinds = write_posts(harness.posts, deferred=30, urgent=5, clear=20)
    server.hold_batches = True
    first = await harness.run(wait=False)
    assert not first.complete and first.pending_requests == 30
    assert harness.outputs.state.exists()
    done = {v.post_id for v in harness.verdicts()}
    assert not any(kinds[post_id] == "deferred" for post_id in done)
    assert len(server.batches) == 2

    await server.end_batches()
    second = await harness.run()
    assert second.complete
    assert_each_post_once(harness.verdicts(), kinds)
    assert len(server.batches) == 2 and set(harness.batch_submissions().values()) == {1}
    assert second.tally.escalated == {"urgent": 5, "deferred": 30}  # the report covers the whole run


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


class DiesAfterCreating(MessageBatches):
    """The run is killed right after the API created a batch, before the run recorded its id."""

    async def submit(self, items: Sequence[tuple[str, FrontierRequest]]) -> BatchState:
        await super().submit(items)
        raise _Killed


async def test_a_run_killed_between_creating_a_batch_and_recording_it_adopts_the_batch(
        harness: Harness, server: MessagesServer) -> None:
    kinds = write_posts(harness.posts, deferred=8, urgent=0, clear=8)
    server.hold_batches = True
    with pytest.raises(_Killed):
        await harness.run(batches=DiesAfterCreating)
    assert len(server.batches) == 1

    server.hold_batches = False
    await server.end_batches()
    report = await harness.run()
    assert report.complete
    assert len(server.batches) == 1, "the batch created before the kill was submitted again"
    assert_each_post_once(harness.verdicts(), kinds)
