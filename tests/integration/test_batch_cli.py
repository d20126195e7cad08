"""``modcascade batch`` with the real model: the same decisions as the stream, and a run killed midway
(SIGKILL) resumes to write every input id exactly once without paying twice for its escalations.

The frontier is our scripted Messages API server, reached by the real ``anthropic`` SDK in the batch process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from rich.console import Console

from pipeline import codec
from pipeline.app.demo import demo_stream
from pipeline.batch.io import open_topic_source, read_verdicts
from pipeline.batch.runner import BatchOptions, BatchRun, Outputs
from pipeline.cascade.cache import ScoreCache
from pipeline.cascade.stage import ClassifyStage
from pipeline.metrics import Metrics
from pipeline.policy import Policy
from pipeline.records import AdjudicationRequest, DeadLetter
from pipeline.retry import Backoff
from pipeline.settings import Settings
from tests.support.cascade import REPO, Stream, publish, through_classify_worker
from tests.support.frontier import MessagesServer, Reply, user_text
from tests.support.kafka import ProducerFactory
from tests.support.models import MAX_LENGTH, Engines

pytestmark = [
    pytest.mark.broker,
    pytest.mark.model,
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]


def demo_posts(n: int, *, malformed_every: int = 0) -> tuple[list[tuple[bytes, bytes]], Stream]:
    stream = Stream()
    for i, value in enumerate(demo_stream(n, malformed_every=malformed_every)):
        key = f"demo-{i + 1:05d}"
        stream.records.append((key.encode(), value))
        try:
            valid = bool(json.loads(value)["text"].strip())
        except (ValueError, KeyError, UnicodeDecodeError):
            valid = False
        (stream.valid_ids if valid else stream.malformed_keys).add(key)
    return stream.records, stream


async def test_the_same_posts_get_the_same_decisions_through_batch_and_through_the_stream(
        kafka_settings: Settings, _session_topics: list[str], engines: Engines, policy: Policy,
        producer_factory: ProducerFactory, tmp_path: Path) -> None:
    from tests.support.cascade import cascade_settings

    settings = await cascade_settings(kafka_settings, REPO / "policies" / "default.yaml", _session_topics,
                                      batch_max_posts=64, batch_max_wait_ms=20)
    settings = settings.model_copy(update={"model": settings.model.model_copy(update={"max_length": MAX_LENGTH})})
    records, stream = demo_posts(400)
    await publish(await producer_factory(), settings.topics.all()["posts"], records)

    streamed = await through_classify_worker(settings, stream, engines.local, timeout_s=120)

    # The batch re-scores the same topic (a backfill), with the same engine and policy, in its own chunks.
    source = await open_topic_source(settings, settings.topics.all()["posts"])
    metrics = Metrics.create(CollectorRegistry())
    classify = ClassifyStage(engines.local, lambda: policy, cache=ScoreCache(10_000, 600.0), metrics=metrics,
                             max_text_bytes=settings.max_text_bytes, backoff=Backoff(0.1, 0.2))
    outputs = Outputs.beside(tmp_path / "batch.jsonl")
    run = BatchRun(source, policy, classify, BatchOptions(outputs=outputs, chunk_posts=150, progress=False),
                   identity={"input": source.identity}, metrics=metrics, console=Console(quiet=True))
    try:
        report = await run.run()
    finally:
        await source.aclose()
    assert report.complete and report.tally.posts == 400

    def decisions(verdicts: Any, requests: Any) -> dict[str, tuple[str, str | None]]:
        found = {v.post_id: (v.decision, v.category) for v in verdicts}
        found.update({r.post.id: ("escalate", r.candidate_category) for r in requests})
        return found

    unadjudicated = [codec.decode(line, AdjudicationRequest)
                     for line in outputs.unadjudicated.read_bytes().splitlines()]
    batch_verdicts = list(read_verdicts(outputs.verdicts))
    in_stream = decisions(streamed.verdicts, streamed.requests)
    in_batch = decisions(batch_verdicts, unadjudicated)
    assert len(in_batch) == len(batch_verdicts) + len(unadjudicated) == 400
    assert in_batch == in_stream
    assert Counter(d for d, _ in in_batch.values()).keys() >= {"allow", "escalate"}  # not a degenerate comparison
    stream_scores = {v.post_id: v.scores for v in streamed.verdicts}
    for verdict in batch_verdicts:
        assert verdict.scores == pytest.approx(stream_scores[verdict.post_id], abs=1e-4)


def answer_the_candidate(body: dict[str, Any]) -> Reply:
    """The frontier settles a post on the category the small model was unsure about."""
    found = re.search(r"unsure about: (\w+)", user_text(body))
    category = found[1] if found and found[1] != "unknown" else "safe"
    return Reply.tool({"category": category, "decision": "allow" if category == "safe" else "block",
                       "rationale": "scripted"})


async def _checkpoint(state: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((state / "checkpoint.json").read_bytes()))
    except (FileNotFoundError, ValueError):
        return {}


async def test_a_batch_killed_midway_resumes_and_writes_every_input_id_exactly_once(
        minilm_dir: Path, tmp_path: Path) -> None:
    records, stream = demo_posts(1500, malformed_every=97)
    posts = tmp_path / "posts.jsonl"
    posts.write_bytes(b"\n".join(value for _, value in records) + b"\n")
    out = tmp_path / "verdicts.parquet"
    outputs = Outputs.beside(out)
    # The test model (a random head) rarely lands in spam's band, the default policy's only deferrable tier:
    # make half the categories deferrable so both paths carry traffic.
    policy_file = tmp_path / "policy.yaml"
    text = (REPO / "policies" / "default.yaml").read_text()
    policy_file.write_text(text.replace("tier: urgent", "tier: deferrable", 3))

    async with MessagesServer(default=answer_the_candidate) as server:
        server.hold_batches = True  # the Message Batches are still running when the run is killed
        env = {**os.environ, "MODCASCADE_MODEL_DIR": str(minilm_dir), "MODCASCADE_MODEL_MAX_LENGTH": str(MAX_LENGTH),
               "MODCASCADE_BATCH_BACKEND": "transformers", "MODCASCADE_BATCH_CHUNK_POSTS": "100",
               "MODCASCADE_BATCH_MESSAGE_BATCH_MAX": "20", "MODCASCADE_BATCH_POLL_INTERVAL_S": "0.2",
               "MODCASCADE_ANTHROPIC_API_KEY": "test", "MODCASCADE_ADJUDICATOR_BASE_URL": server.url,
               "MODCASCADE_ADJUDICATOR_RATE_PER_S": "1000", "MODCASCADE_ADJUDICATOR_BURST": "100",
               "MODCASCADE_METRICS_PORT": "0", "MODCASCADE_POLICY_PATH": str(policy_file)}
        command = [sys.executable, "-m", "pipeline.cli", "batch", "--in", str(posts), "--out", str(out),
                   "--no-progress"]
        log = (tmp_path / "batch.log").open("ab")
        first = await asyncio.create_subprocess_exec(*command, env=env, cwd=REPO, stdout=log, stderr=log)
        try:
            async with asyncio.timeout(180):
                while (state := await _checkpoint(outputs.state)).get("chunks", 0) < 6 or not state.get("pending"):
                    assert first.returncode is None, (tmp_path / "batch.log").read_text()[-3000:]
                    await asyncio.sleep(0.1)
        finally:
            if first.returncode is None:
                first.kill()
            await first.wait()
        submitted_before_kill = len(server.batches)

        server.hold_batches = False
        await server.end_batches()  # they finished while nothing was polling
        second = await asyncio.create_subprocess_exec(*command, env=env, cwd=REPO, stdout=log, stderr=log)
        assert await asyncio.wait_for(second.wait(), timeout=300) == 0, (tmp_path / "batch.log").read_text()[-3000:]
        log.close()

        verdict_ids = Counter(v.post_id for v in read_verdicts(out))
        assert set(verdict_ids) == stream.valid_ids, sorted(stream.valid_ids ^ set(verdict_ids))[:5]
        assert max(verdict_ids.values()) == 1, [k for k, n in verdict_ids.items() if n > 1][:5]
        letters = [codec.decode(line, DeadLetter) for line in outputs.dead_letters.read_bytes().splitlines()]
        malformed_lines = {int(key.removeprefix("demo-")) for key in stream.malformed_keys}  # ids are line numbers
        assert sorted(letter.source_offset or 0 for letter in letters) == sorted(malformed_lines)
        assert not outputs.unadjudicated.exists() or not outputs.unadjudicated.read_bytes()

        report = json.loads(outputs.report.read_bytes())
        escalated = report["tally"]["escalated"]
        assert escalated.get("urgent", 0) > 0 and escalated.get("deferred", 0) > 0, escalated
        # Paid at most once: a direct call per urgent escalation, plus at most the calls in flight at the kill
        # (the adjudicator's concurrency, 8); every deferred one in exactly one Message Batch.
        direct = [r for r in server.requests if r.path == "/v1/messages"]
        assert escalated["urgent"] <= len(direct) <= escalated["urgent"] + 8
        batched = sum(len(batch.requests) for batch in server.batches.values())
        assert batched == escalated["deferred"]
        assert len(server.batches) >= submitted_before_kill >= 1  # batches pending at the kill were collected
        assert not outputs.state.exists()
