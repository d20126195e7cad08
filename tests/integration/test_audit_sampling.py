"""The audit sample on the real broker: the classify worker (fake classifier) draws a seeded share of its final
verdicts, the adjudicate worker (the real ``anthropic`` SDK against our scripted Messages API) judges them, and
each audit ends as exactly one Label marked audit; the published verdicts stay as they were, and the live-precision
gauge says what the outcomes say.

Bounds: the draw is a hash of (seed, post id), so the set of audited posts is known in advance and asserted
exactly; its size is also checked against the binomial law it follows (mean sum of the rates, within 4 standard
deviations), which is what "about r·N" means for this stream.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline import codec
from pipeline.adjudication.anthropic_api import AnthropicAdjudicator
from pipeline.backends.fake import FakeClassifier
from pipeline.kafka import make_consumer
from pipeline.metrics import Metrics, wilson_interval
from pipeline.policy import audited, decide, load_policy
from pipeline.records import Label, Verdict
from pipeline.services import run_adjudicate_worker, run_classify_worker
from pipeline.settings import Settings
from tests.support.cascade import REPO, cascade_settings, publish
from tests.support.frontier import MessagesServer, Reply, user_text
from tests.support.kafka import ProducerFactory

pytestmark = pytest.mark.broker

LABELS = ("safe", "spam", "harassment", "hate", "sexual", "violence", "self_harm")
N = 600
SEED = 2026
ALLOW_RATE, BLOCK_RATE = 0.1, 0.5
AUDIT = f"""
audit:  # the test's sample
  seed: {SEED}  # the draw's seed
  slm:  # small-model verdicts
    allow: {ALLOW_RATE}  # share of allows audited
    block: {BLOCK_RATE}  # share of blocks audited
  budget:  # caps on audit calls
    max_requests_per_hour: 10000  # plenty
"""


def scores_of(kind: str) -> dict[str, float]:
    top = {"allow": ("safe", 0.97), "block": ("spam", 0.95), "band": ("spam", 0.5)}[kind]
    rest = (1.0 - top[1]) / (len(LABELS) - 1)
    return {label: top[1] if label == top[0] else rest for label in LABELS}


def rule(text: str) -> dict[str, float]:
    return scores_of(text.split("slm:")[1].split()[0])


def post_text(i: int) -> tuple[str, str]:
    """A distinct text per post (so every verdict is route slm), with what the small model and the judge say."""
    kind = "band" if i % 10 == 9 else "block" if i % 10 >= 7 else "allow"
    judge = {"allow": "spam" if i % 7 == 0 else "safe", "block": "safe" if i % 4 == 0 else "spam",
             "band": "spam"}[kind]
    return f"post {i} slm:{kind} judge:{judge}", judge


def judge(body: Mapping[str, Any]) -> Reply:
    category = user_text(body).split("judge:")[1].split()[0]
    return Reply.tool({"category": category, "decision": "allow" if category == "safe" else "block",
                       "rationale": f"judged {category}"})


def without_audit(text: str) -> str:
    start = text.find("\naudit:")
    return text if start < 0 else text[:start] + text[text.find("\n\n", start + 1):]


@pytest.fixture
async def server() -> AsyncIterator[MessagesServer]:
    async with MessagesServer(default=judge) as s:
        yield s


async def test_a_seeded_audit_sample_gives_one_outcome_label_per_audit_and_the_live_precision(
    kafka_settings: Settings, _session_topics: list[str], tmp_path: Path, producer_factory: ProducerFactory,
    server: MessagesServer,
) -> None:
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(without_audit((REPO / "policies" / "default.yaml").read_text(encoding="utf-8")) + AUDIT,
                           encoding="utf-8")
    policy = load_policy(policy_path)
    settings = await cascade_settings(kafka_settings, policy_path, _session_topics, batch_max_wait_ms=20)
    settings = settings.model_copy(update={"adjudicator": settings.adjudicator.model_copy(
        update={"group_id": settings.topics.prefix + "adjudicate", "batch_max_wait_ms": 20, "rate_per_s": 500.0})})

    posts = {f"a{i}": post_text(i) for i in range(N)}
    expected: set[str] = set()
    escalated: set[str] = set()
    mean = variance = 0.0
    for post_id, (text, _) in posts.items():
        outcome = decide(rule(text), policy)
        if not outcome.final:
            escalated.add(post_id)
            continue
        rate = policy.audit.rate("slm", outcome.kind, outcome.category)
        mean, variance = mean + rate, variance + rate * (1 - rate)
        if audited(policy.audit, post_id, route="slm", decision=outcome.kind, category=outcome.category):
            expected.add(post_id)
    # About r·N: a sum of Bernoulli draws, mean 420·0.1 + 120·0.5 = 102 here (108 drawn); 4 sd (8.2) either side.
    assert abs(len(expected) - mean) <= 4 * math.sqrt(variance), (len(expected), mean, variance)

    classify_metrics, adjudicate_metrics = Metrics.create(CollectorRegistry()), Metrics.create(CollectorRegistry())
    adjudicator = AnthropicAdjudicator(api_key="test-key", base_url=server.url, timeout_s=5)
    stop = asyncio.Event()
    workers = [
        asyncio.create_task(run_classify_worker(settings, stop, classifier=FakeClassifier(LABELS, rule=rule),
                                                metrics=classify_metrics)),
        asyncio.create_task(run_adjudicate_worker(settings, stop, adjudicator=adjudicator,
                                                  metrics=adjudicate_metrics)),
    ]
    records = [(post_id.encode(), codec.dumps({"id": post_id, "text": text})) for post_id, (text, _) in posts.items()]
    await publish(await producer_factory(), settings.topics.all()["posts"], records)

    topics = settings.topics.all()
    consumer = make_consumer(settings, topics["verdicts"], topics["labels"], group_id=None)
    await consumer.start()
    verdicts: list[Verdict] = []
    labels: list[Label] = []
    try:
        async with asyncio.timeout(120):
            done_at: float | None = None
            while done_at is None or time.monotonic() < done_at + 2.0:  # then 2 s more: duplicates would show
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    for m in batch:
                        if m.topic == topics["verdicts"]:
                            verdicts.append(codec.decode(m.value or b"", Verdict))
                        else:
                            labels.append(codec.decode(m.value or b"", Label))
                if done_at is None and len({v.post_id for v in verdicts}) == N and len(labels) >= len(expected) + len(
                        escalated):
                    done_at = time.monotonic()
                assert not any(w.done() for w in workers), workers
    finally:
        await consumer.stop()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers), timeout=30)
        await adjudicator.aclose()

    audits = [label for label in labels if label.audit]
    assert Counter(label.post_id for label in audits) == Counter(expected)  # exactly the drawn posts, once each
    assert {label.post_id for label in labels if not label.audit} == escalated
    # The published verdicts stay: one per post, from the small model for every audited post, none from an audit.
    assert Counter(v.post_id for v in verdicts) == Counter(list(posts))
    by_post = {v.post_id: v for v in verdicts}
    assert {by_post[p].route for p in expected} == {"slm"}
    assert {by_post[p].route for p in escalated} == {"frontier"}
    for label in audits:
        verdict = by_post[label.post_id]
        assert label.audited is not None and label.verdict_id == verdict.verdict_id == label.audited.verdict_id
        assert (label.audited.decision, label.audited.category) == (verdict.decision, verdict.category)
        assert label.label == posts[label.post_id][1] and label.source == "frontier"
        assert label.agrees == (label.label == (verdict.category or "safe"))
        assert label.cost_usd is not None and label.cost_usd > 0
    assert len(server.requests) == len(expected) + len(escalated)

    # The metrics say what the outcomes say.
    def sample(metrics: Metrics, name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    outcomes: dict[str, list[int]] = {}
    for label in audits:
        assert label.audited is not None
        counts = outcomes.setdefault(label.audited.category or "none", [0, 0])
        counts[0] += int(bool(label.agrees))
        counts[1] += 1
    assert set(outcomes) == {"none", "spam"} and all(0 < agreed < n for agreed, n in outcomes.values())
    for category, (agreed, n) in outcomes.items():
        assert sample(adjudicate_metrics, "modcascade_audit_outcomes_total", route="slm", category=category,
                      agreement="agree") == agreed
        assert sample(adjudicate_metrics, "modcascade_audit_outcomes_total", route="slm", category=category,
                      agreement="disagree") == n - agreed
        assert sample(classify_metrics, "modcascade_audit_requests_total", route="slm", category=category) == n
        interval = wilson_interval(agreed, n)
        for bound, value in (("estimate", agreed / n), ("low", interval.low), ("high", interval.high)):
            assert sample(adjudicate_metrics, "modcascade_audit_live_precision", category=category,
                          bound=bound) == pytest.approx(value)
    audit_cost = sum(label.cost_usd or 0.0 for label in audits)
    assert sample(adjudicate_metrics, "modcascade_audit_cost_usd_total") == pytest.approx(audit_cost)
    assert sample(adjudicate_metrics, "modcascade_audit_skipped_total", reason="over_budget") == 0
    # Escalations are counted apart from audits.
    assert sum(sample(classify_metrics, "modcascade_escalations_total", category=c) for c in LABELS) == len(escalated)
