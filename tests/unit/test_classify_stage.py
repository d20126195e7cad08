"""The classify stage, with the in-package fake classifier: routing, repeats, bad input, a model outage.

Scores are scripted per text so every expectation follows from the default policy's bands
(spam: allow below 0.30, block at 0.90, tier deferrable; self_harm: review at 0.70).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline import codec
from pipeline.backends.fake import FakeClassifier
from pipeline.cascade.cache import ScoreCache
from pipeline.cascade.stage import ClassifyStage
from pipeline.intake import RawRecord
from pipeline.metrics import Metrics
from pipeline.policy import Policy, load_policy, parse_policy
from pipeline.records import AdjudicationRequest, DeadLetter, ShadowDecision, Verdict, verdict_id
from pipeline.retry import Backoff
from pipeline.stage import Outgoing

REPO = Path(__file__).resolve().parents[2]
LABELS = ("safe", "spam", "harassment", "hate", "sexual", "violence", "self_harm")
NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def scores(**top: float) -> dict[str, float]:
    rest = (1.0 - sum(top.values())) / (len(LABELS) - len(top))
    return {label: top.get(label, rest) for label in LABELS}


SCRIPT = {
    "hello neighbours": scores(safe=0.97),
    "BUY FOLLOWERS bit.ly/x": scores(spam=0.95),
    "great deal on my old bike": scores(spam=0.5, safe=0.45),
    "I can't go on": scores(self_harm=0.8),
}


def rule(text: str) -> dict[str, float]:
    return SCRIPT[" ".join(text.split())]


@pytest.fixture
def policy() -> Policy:
    return load_policy(REPO / "policies" / "default.yaml")


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create(CollectorRegistry())


@pytest.fixture
def classifier() -> FakeClassifier:
    return FakeClassifier(LABELS, rule=rule, model_name="minilm-test", model_version="m-1")


def make_stage(classifier: FakeClassifier, policy: Policy | list[Policy], metrics: Metrics) -> ClassifyStage:
    current = policy if isinstance(policy, list) else [policy]
    return ClassifyStage(classifier, lambda: current[-1], cache=ScoreCache(100, 60), metrics=metrics,
                         max_text_bytes=1000, backoff=Backoff(base_s=1.0, max_s=8.0), clock=lambda: NOW)


def raw(post_id: str, text: str, offset: int = 0, **fields: object) -> RawRecord:
    return RawRecord(codec.dumps({"id": post_id, "text": text, **fields}), post_id.encode(), "posts", 0, offset)


async def no_wait(seconds: float) -> None:
    raise AssertionError("the stage backed off although the backend was up")


async def test_confident_posts_get_final_verdicts_with_every_field(classifier: FakeClassifier, policy: Policy,
                                                                   metrics: Metrics) -> None:
    stage = make_stage(classifier, policy, metrics)
    created = NOW - timedelta(milliseconds=250)
    out = await stage.process([raw("p1", "hello neighbours", created_at=created.isoformat()),
                               raw("p2", "BUY FOLLOWERS bit.ly/x")], no_wait)

    assert [o.role for o in out] == ["verdicts", "verdicts"]
    allow, block = (codec.decode(o.value, Verdict) for o in out)
    assert (allow.decision, allow.category, block.decision, block.category) == ("allow", None, "block", "spam")
    assert allow.verdict_id == verdict_id("p1", policy.version)
    assert allow.route == "slm" and allow.final
    assert (allow.model, allow.model_version) == ("minilm-test", "m-1")
    assert (allow.policy, allow.policy_version) == (policy.name, policy.version)
    assert allow.scores == SCRIPT["hello neighbours"]
    assert allow.latency_ms == pytest.approx(250.0)
    assert allow.cost_usd == pytest.approx(policy.prices.small_model_usd_per_1k_posts / 1000)
    assert out[0].key == b"p1"


async def test_a_post_in_a_band_is_escalated_in_its_category_tier(classifier: FakeClassifier, policy: Policy,
                                                                  metrics: Metrics) -> None:
    stage = make_stage(classifier, policy, metrics)
    out = await stage.process([raw("p3", "great deal on my old bike", source="web")], no_wait)

    assert [o.role for o in out] == ["adjudication"]
    request = codec.decode(out[0].value, AdjudicationRequest)
    assert request.post.id == "p3" and request.post.source == "web"
    assert request.candidate_category == "spam" and request.tier == "deferrable"
    assert request.policy_version == policy.version and request.model_version == "m-1"
    assert request.scores == SCRIPT["great deal on my old bike"]
    assert request.attempt == 0


async def test_a_review_action_is_a_final_verdict(classifier: FakeClassifier, policy: Policy,
                                                  metrics: Metrics) -> None:
    out = await make_stage(classifier, policy, metrics).process([raw("p4", "I can't go on")], no_wait)
    verdict = codec.decode(out[0].value, Verdict)
    assert (verdict.decision, verdict.category, verdict.final) == ("review", "self_harm", True)


async def test_malformed_records_are_dead_lettered_and_the_batch_goes_on(classifier: FakeClassifier,
                                                                         policy: Policy, metrics: Metrics) -> None:
    bad = [
        RawRecord(b'{"id": "x1", "text": ', b"x1", "posts", 0, 1),
        RawRecord(b'{"id": "x2"}', b"x2", "posts", 0, 2),
        RawRecord(b'{"id": "x3", "text": "caf\xe9"}', None, "posts", 0, 3),
        raw("x4", "a" * 1001, offset=4),
        raw("x5", "   ", offset=5),
    ]
    out = await make_stage(classifier, policy, metrics).process([raw("ok", "hello neighbours"), *bad], no_wait)

    letters = [codec.decode(o.value, DeadLetter) for o in out if o.role == "dead_letter"]
    assert [d.reason for d in letters] == ["invalid_json", "invalid_record", "invalid_utf8", "too_large", "empty_text"]
    assert [d.original_bytes() for d in letters] == [r.value for r in bad]
    assert [d.source_offset for d in letters] == [1, 2, 3, 4, 5]
    assert {d.stage for d in letters} == {"classify.intake"}
    assert [o.role for o in out if o.role != "dead_letter"] == ["verdicts"]
    assert classifier.calls == [1]


async def test_repeats_reuse_scores_without_a_model_call(classifier: FakeClassifier, policy: Policy,
                                                         metrics: Metrics) -> None:
    stage = make_stage(classifier, policy, metrics)
    wave = [raw(f"s{i}", "BUY FOLLOWERS bit.ly/x" if i % 2 else "BUY  FOLLOWERS bit.ly/x ") for i in range(5)]
    first = await stage.process([raw("h", "hello neighbours"), *wave], no_wait)
    assert classifier.calls == [2]  # one call, each distinct text once
    routes = [codec.decode(o.value, Verdict).route for o in first]
    assert routes == ["slm", "slm", "cache", "cache", "cache", "cache"]

    second = await stage.process([raw("s9", "BUY FOLLOWERS bit.ly/x")], no_wait)
    assert classifier.calls == [2]  # a hit across batches: no call at all
    hit = codec.decode(second[0].value, Verdict)
    assert (hit.route, hit.decision, hit.cost_usd) == ("cache", "block", 0.0)
    assert hit.scores == SCRIPT["BUY FOLLOWERS bit.ly/x"]
    lookups = {s.labels["result"]: s.value for s in metrics.cache_lookups.collect()[0].samples
               if s.name.endswith("_total")}
    assert lookups == {"hit": 5.0, "miss": 2.0}


async def test_a_model_outage_backs_off_and_loses_nothing(classifier: FakeClassifier, policy: Policy,
                                                          metrics: Metrics) -> None:
    stage = make_stage(classifier, policy, metrics)
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 4:
            classifier.down = False  # the server comes back

    classifier.down = True
    out = await stage.process([raw("p1", "hello neighbours"), raw("p2", "BUY FOLLOWERS bit.ly/x")], wait)

    assert [o.role for o in out] == ["verdicts", "verdicts"]
    assert len(waits) == 4
    assert 0.5 <= waits[0] <= 1.0 and 4.0 <= waits[3] <= 8.0  # jittered, growing, capped
    assert metrics.registry.get_sample_value("modcascade_backend_up") == 1
    assert metrics.registry.get_sample_value("modcascade_model_errors_total", {"kind": "unavailable"}) == 4


async def test_each_batch_decides_under_the_policy_in_force(classifier: FakeClassifier, policy: Policy,
                                                            metrics: Metrics) -> None:
    policies = [policy]
    stage = make_stage(classifier, policies, metrics)
    before = await stage.process([raw("p1", "great deal on my old bike")], no_wait)
    assert before[0].role == "adjudication"

    text = (REPO / "policies" / "default.yaml").read_text()
    stricter = parse_policy(text.replace("block_at: 0.90  # scores at or above this take the action\n"
                                         "    action: block  # decision at or above block_at: block or review\n"
                                         "    tier: deferrable",
                                         "block_at: 0.40  # scores at or above this take the action\n"
                                         "    action: block  # decision at or above block_at: block or review\n"
                                         "    tier: deferrable", 1), "edited.yaml")
    assert stricter.version != policy.version
    policies.append(stricter)
    after = await stage.process([raw("p2", "great deal on my old bike")], no_wait)

    verdict = codec.decode(after[0].value, Verdict)
    assert (verdict.decision, verdict.policy_version) == ("block", stricter.version)
    assert classifier.calls == [1, 1]  # the cache is per policy version


async def test_published_outputs_are_counted(classifier: FakeClassifier, policy: Policy, metrics: Metrics) -> None:
    stage = make_stage(classifier, policy, metrics)
    out = await stage.process([raw("p1", "hello neighbours"), raw("p3", "great deal on my old bike"),
                               RawRecord(b"{", None, "posts", 0, 9)], no_wait)
    stage.published(out)
    registry = metrics.registry
    assert registry.get_sample_value("modcascade_decisions_total",
                                     {"decision": "allow", "category": "none", "route": "slm"}) == 1
    assert registry.get_sample_value("modcascade_escalations_total", {"category": "spam"}) == 1
    assert registry.get_sample_value("modcascade_dead_letters_total",
                                     {"stage": "classify.intake", "reason": "invalid_json"}) == 1


async def test_a_shadow_policy_is_decided_next_to_the_live_one_but_never_becomes_a_verdict(
    classifier: FakeClassifier, policy: Policy, metrics: Metrics
) -> None:
    # The candidate settles spam at 0.5 instead of escalating it: the bike post would be blocked.
    candidate = parse_policy((REPO / "policies" / "default.yaml").read_text().replace(
        "    allow_below: 0.30  # scores below this are allowed\n    block_at: 0.90",
        "    allow_below: 0.30  # scores below this are allowed\n    block_at: 0.50", 1))
    posts = [raw("p1", "hello neighbours"), raw("p2", "great deal on my old bike", 1),
             RawRecord(b"{not json", b"p3", "posts", 0, 2)]
    live_only = await make_stage(classifier, policy, Metrics.create(CollectorRegistry())).process(posts, no_wait)
    stage = ClassifyStage(classifier, lambda: policy, cache=ScoreCache(100, 60), metrics=metrics, max_text_bytes=1000,
                          backoff=Backoff(1.0, 8.0), shadow=lambda: candidate, clock=lambda: NOW)
    out = await stage.process(posts, no_wait)

    def decisions(outputs: list[Outgoing]) -> list[tuple[str, bytes]]:  # dead letters carry a wall-clock time
        return [(o.role, o.value if o.role != "dead_letter" else o.key) for o in outputs if o.role != "shadow"]

    assert decisions(out) == decisions(live_only), "the shadow policy changed a live output"
    shadows = {o.record.post_id: o.record for o in out if isinstance(o.record, ShadowDecision)}
    assert set(shadows) == {"p1", "p2"}  # one per valid post, none for the dead letter
    bike = shadows["p2"]
    assert (bike.live_decision, bike.shadow_decision, bike.shadow_category) == ("escalate", "block", "spam")
    assert (bike.live_policy_version, bike.shadow_policy_version) == (policy.version, candidate.version)
    assert not bike.agrees and shadows["p1"].agrees
    stage.published(out)
    registry = metrics.registry
    assert registry.get_sample_value("modcascade_shadow_disagreements_total",
                                     {"live": "escalate", "shadow": "block"}) == 1
    assert registry.get_sample_value("modcascade_shadow_decisions_total",
                                     {"decision": "allow", "category": "none"}) == 1
    assert registry.get_sample_value("modcascade_decisions_total",
                                     {"decision": "block", "category": "spam", "route": "slm"}) is None
