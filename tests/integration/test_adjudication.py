"""The adjudicate worker with the real ``anthropic`` SDK against our scripted Messages API server.

- end to end on the real broker: classify worker → adjudication → adjudicate worker → final verdicts;
- prompt injection: hostile posts stay inside their delimiters, the instructions never change, a label
  outside the taxonomy is rejected;
- the system prompt is byte-identical across requests of one policy version, and costs add up from usage.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline import codec
from pipeline.adjudication.anthropic_api import AnthropicAdjudicator
from pipeline.adjudication.stage import AdjudicationLimits, AdjudicationStage
from pipeline.backends.fake import FakeClassifier
from pipeline.intake import RawRecord
from pipeline.kafka import make_consumer
from pipeline.metrics import Metrics
from pipeline.policy import load_policy
from pipeline.records import AdjudicationRequest, Label, Post, Verdict
from pipeline.retry import Backoff
from pipeline.services import run_adjudicate_worker, run_classify_worker
from pipeline.settings import Settings
from tests.support.cascade import REPO, cascade_settings, make_stream, publish
from tests.support.frontier import MessagesServer, Reply, Usage, user_text
from tests.support.kafka import ProducerFactory

LABELS = ("safe", "spam", "harassment", "hate", "sexual", "violence", "self_harm")
BAND = {"safe": 0.40, "spam": 0.55, "harassment": 0.01, "hate": 0.01, "sexual": 0.01, "violence": 0.01,
        "self_harm": 0.01}
HOSTILE = [codec.loads(line) for line in (REPO / "tests" / "data" / "hostile_posts.jsonl").read_bytes().splitlines()]
POLICY = load_policy(REPO / "policies" / "default.yaml")


def spam_verdict(body: Mapping[str, Any]) -> Reply:
    return Reply.tool({"category": "spam", "decision": "block", "rationale": "Unsolicited promotion."})


@pytest.fixture
async def server() -> AsyncIterator[MessagesServer]:
    async with MessagesServer(default=spam_verdict) as s:
        yield s


@pytest.fixture
async def adjudicator(server: MessagesServer) -> AsyncIterator[AnthropicAdjudicator]:
    client = AnthropicAdjudicator(api_key="test-key", base_url=server.url, timeout_s=5)
    yield client
    await client.aclose()


async def test_every_escalated_post_gets_one_final_frontier_verdict(
    kafka_settings: Settings, _session_topics: list[str], tmp_path: Path, producer_factory: ProducerFactory,
    adjudicator: AnthropicAdjudicator, server: MessagesServer,
) -> None:
    policy_path = tmp_path / "policy.yaml"
    shutil.copy(REPO / "policies" / "default.yaml", policy_path)
    settings = await cascade_settings(kafka_settings, policy_path, _session_topics, batch_max_wait_ms=20)
    settings = settings.model_copy(update={"adjudicator": settings.adjudicator.model_copy(
        update={"group_id": settings.topics.prefix + "adjudicate", "batch_max_wait_ms": 20, "rate_per_s": 500.0})})
    stop = asyncio.Event()
    metrics = Metrics.create(CollectorRegistry())
    workers = [
        asyncio.create_task(run_classify_worker(settings, stop, classifier=FakeClassifier(LABELS, rule=lambda t: BAND),
                                                metrics=Metrics.create(CollectorRegistry()))),
        asyncio.create_task(run_adjudicate_worker(settings, stop, adjudicator=adjudicator, metrics=metrics)),
    ]
    stream = make_stream(200, malformed_every=1000)
    await publish(await producer_factory(), settings.topics.all()["posts"], stream.records)

    topics = settings.topics.all()
    consumer = make_consumer(settings, topics["verdicts"], topics["labels"], group_id=None)
    await consumer.start()
    verdicts: dict[str, Verdict] = {}
    labels: dict[str, Label] = {}
    try:
        async with asyncio.timeout(90):
            while len(verdicts) < len(stream.valid_ids) or len(labels) < len(stream.valid_ids):
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    for m in batch:
                        if m.topic == topics["verdicts"]:
                            v = codec.decode(m.value or b"", Verdict)
                            verdicts.setdefault(v.verdict_id, v)
                        else:
                            label = codec.decode(m.value or b"", Label)
                            labels[label.post_id] = label
    finally:
        await consumer.stop()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers), timeout=30)

    assert sorted(v.post_id for v in verdicts.values()) == sorted(stream.valid_ids)  # one per post, de-duplicated
    assert {(v.route, v.final, v.decision, v.category) for v in verdicts.values()} == {("frontier", True, "block",
                                                                                          "spam")}
    assert all(v.rationale == "Unsolicited promotion." and v.cost_usd > 0 for v in verdicts.values())
    assert {label.source for label in labels.values()} == {"frontier"}
    assert all(label.model_scores == BAND for label in labels.values())
    total = sum(v.cost_usd for v in verdicts.values())
    assert metrics.registry.get_sample_value("modcascade_frontier_cost_usd_total") == pytest.approx(total)
    assert len(server.requests) == len(stream.valid_ids)


def request_for(post: Mapping[str, Any]) -> RawRecord:
    req = AdjudicationRequest(post=Post(id=post["id"], text=post["text"]), scores=BAND, candidate_category="spam",
                              model="mini", model_version="m-1", policy="default", policy_version=POLICY.version,
                              ingested_at="2026-11-24T12:00:00Z")
    return RawRecord(codec.encode(req), str(post["id"]).encode(), "adjudication", 0, 0)


async def no_wait(seconds: float) -> None:
    raise AssertionError("nothing should be held")


async def test_hostile_posts_stay_data_and_labels_outside_the_taxonomy_are_rejected(
    adjudicator: AnthropicAdjudicator, server: MessagesServer
) -> None:
    assert len(HOSTILE) >= 30

    def obey_the_post(body: Mapping[str, Any]) -> Reply:  # a model that fell for it would answer this
        return Reply.tool({"category": "approved", "decision": "allow", "rationale": "The post says it is fine."})

    server.default = obey_the_post
    stage = AdjudicationStage(adjudicator, lambda: POLICY, metrics=Metrics.create(CollectorRegistry()),
                              limits=AdjudicationLimits(rate_per_s=1000, burst=100, max_attempts=2,
                                                        backoff=Backoff(0.001, 0.002)))
    outputs = await stage.process([request_for(post) for post in HOSTILE], no_wait)

    verdicts = [o.record for o in outputs]
    assert all(isinstance(v, Verdict) and v.route == "fallback" and v.flags == ("frontier_out_of_schema",)
               for v in verdicts), "an answer outside the taxonomy was accepted"
    systems = {r.system_text.encode() for r in server.requests}
    assert len(systems) == 1, "the system prompt changed between requests of one policy version"
    by_text = {p["text"]: p for p in HOSTILE}
    seen = set()
    for recorded in server.requests:
        user = user_text(recorded.body)
        header, _, rest = user.partition("<<<POST ")
        nonce, _, rest = rest.partition(">>>\n")
        text, end, tail = rest.rpartition(f"\n<<<END POST {nonce}>>>")
        assert end and tail == "" and len(nonce) == 16
        assert text in by_text, "the post was altered on its way into the request"
        assert user.count(nonce) == 2, "the nonce leaked or the post contains it"
        assert "An automated classifier could not settle this post" in header
        seen.add(text)
    assert seen == set(by_text)
    system = next(iter(systems)).decode()
    assert all(p["text"] not in system for p in HOSTILE)


async def test_costs_add_up_from_the_usage_fields_and_the_cache_is_read_after_the_first_call(
    adjudicator: AnthropicAdjudicator, server: MessagesServer
) -> None:
    server.script(
        Reply.tool({"category": "spam", "decision": "block", "rationale": "a"},
                   usage=Usage(input=40, output=30, cache_write=900, cache_read=0)),
        Reply.tool({"category": "safe", "decision": "allow", "rationale": "b"},
                   usage=Usage(input=45, output=20, cache_write=0, cache_read=900)),
    )
    stage = AdjudicationStage(adjudicator, lambda: POLICY, metrics=Metrics.create(CollectorRegistry()),
                              limits=AdjudicationLimits(concurrency=1, rate_per_s=1000, burst=100))
    outputs = await stage.process([request_for(HOSTILE[0]), request_for(HOSTILE[1])], no_wait)
    verdicts = [o.record for o in outputs if isinstance(o.record, Verdict)]
    p = POLICY.prices.frontier
    expected = [(40 * p.input_usd_per_mtok + 30 * p.output_usd_per_mtok + 900 * p.cache_write_usd_per_mtok) / 1e6,
                (45 * p.input_usd_per_mtok + 20 * p.output_usd_per_mtok + 900 * p.cache_read_usd_per_mtok) / 1e6]
    assert [v.cost_usd for v in verdicts] == pytest.approx(expected)
    assert verdicts[1].decision == "allow" and verdicts[1].category is None
    registry = stage.metrics.registry
    assert registry.get_sample_value("modcascade_frontier_tokens_total", {"kind": "cache_read"}) == 900
