"""The adjudication stage with a scripted adjudicator (the real SDK against our test server is in the
integration tests): retries, the breaker, the budget, the fallback, the cost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline import codec
from pipeline.adjudication.backends import FrontierReply, TokenUsage
from pipeline.adjudication.prompt import TOOL_NAME, FrontierRequest
from pipeline.adjudication.stage import AdjudicationLimits, AdjudicationStage
from pipeline.errors import FrontierRejected, FrontierTransient
from pipeline.intake import RawRecord
from pipeline.metrics import Metrics
from pipeline.policy import Policy, load_policy, parse_policy
from pipeline.records import AdjudicationRequest, DeadLetter, Label, Post, Verdict, verdict_id
from pipeline.retry import Backoff
from tests.support.samples import SCORES, T0

REPO = Path(__file__).resolve().parents[2]
POLICY = load_policy(REPO / "policies" / "default.yaml")
USAGE = TokenUsage(input=100, output=50, cache_write=1000, cache_read=0)
Step = FrontierReply | Exception


def answer(category: str = "spam", decision: str = "block", usage: TokenUsage = USAGE) -> FrontierReply:
    return FrontierReply([{"type": "tool_use", "id": "t", "name": TOOL_NAME,
                           "input": {"category": category, "decision": decision, "rationale": "because"}}],
                         "tool_use", usage, "claude-test-1", "msg_1")


REFUSAL = FrontierReply([], "refusal", TokenUsage(input=10, output=1), "claude-test-1", "msg_r")


class Scripted:
    provider = "scripted"

    def __init__(self, *steps: Step, default: Step | None = None) -> None:
        self.steps = list(steps)
        self.default = default
        self.requests: list[FrontierRequest] = []

    async def adjudicate(self, request: FrontierRequest) -> FrontierReply:
        self.requests.append(request)
        step = self.steps.pop(0) if self.steps else self.default
        if step is None:
            raise AssertionError("no scripted reply left")
        if isinstance(step, Exception):
            raise step
        return step

    async def aclose(self) -> None:
        pass


def with_policy(**replace: str) -> Policy:
    text = (REPO / "policies" / "default.yaml").read_text()
    for old, new in replace.items():
        assert old.replace("_", " ") in text or old in text
        text = text.replace(old, new)
    return parse_policy(text, "test.yaml")


HOLD = with_policy(**{"fallback: small_model": "fallback: hold"})


def raw(post_id: str, text: str = "great deal on my old bike") -> RawRecord:
    req = AdjudicationRequest(post=Post(id=post_id, text=text), scores=SCORES, candidate_category="spam", model="mini",
                              model_version="m-1", policy="default", policy_version=POLICY.version, ingested_at=T0,
                              enqueued_at=T0)
    return RawRecord(codec.encode(req), post_id.encode(), "adjudication", 0, 0)


def stage(adjudicator: Scripted, policy: Policy = POLICY, **limits: object) -> AdjudicationStage:
    settings = {"rate_per_s": 1000.0, "burst": 100, "backoff": Backoff(0.001, 0.002), **limits}
    return AdjudicationStage(adjudicator, lambda: policy, limits=AdjudicationLimits(**settings),  # type: ignore[arg-type]
                             metrics=Metrics.create(CollectorRegistry()), clock=lambda: T0)


async def no_wait(seconds: float) -> None:
    raise AssertionError("the stage paused although nothing had to be held")


def records(outs: list) -> list:  # type: ignore[type-arg]
    return [o.record for o in outs]


def sample(s: AdjudicationStage, name: str, **labels: str) -> float:
    return s.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_an_accepted_answer_is_a_final_frontier_verdict_and_a_label_with_its_real_cost() -> None:
    s = stage(Scripted(answer()))
    verdict, label = records(await s.process([raw("p1")], no_wait))
    assert isinstance(verdict, Verdict) and isinstance(label, Label)
    assert (verdict.route, verdict.final, verdict.decision, verdict.category) == ("frontier", True, "block", "spam")
    assert verdict.verdict_id == verdict_id("p1", POLICY.version) and verdict.rationale == "because"
    assert verdict.model_version == "claude-test-1" and verdict.scores == SCORES
    prices = POLICY.prices.frontier
    expected = (100 * prices.input_usd_per_mtok + 50 * prices.output_usd_per_mtok
                + 1000 * prices.cache_write_usd_per_mtok) / 1e6
    assert verdict.cost_usd == pytest.approx(expected)
    assert sample(s, "modcascade_frontier_cost_usd_total") == pytest.approx(expected)
    assert sample(s, "modcascade_frontier_tokens_total", kind="cache_write") == 1000
    assert (label.source, label.label, label.model_scores, label.model_version) == ("frontier", "spam", SCORES, "m-1")


async def test_a_429_is_retried_after_the_time_the_server_asked_for() -> None:
    scripted = Scripted(FrontierTransient("429", kind="rate_limited", retry_after=0.01), answer())
    s = stage(scripted)
    (verdict, _label) = records(await s.process([raw("p1")], no_wait))
    assert verdict.route == "frontier" and len(scripted.requests) == 2
    assert sample(s, "modcascade_frontier_calls_total", outcome="rate_limited") == 1


async def test_an_overload_storm_opens_the_breaker_and_the_fallback_decides() -> None:
    scripted = Scripted(default=FrontierTransient("529", kind="overloaded"))
    s = stage(scripted, breaker_failures=3, max_attempts=10)
    outs = records(await s.process([raw(f"p{i}") for i in range(5)], no_wait))
    assert len(scripted.requests) == 3  # the breaker stopped the calls
    assert {(v.route, v.final, v.flags) for v in outs} == {("fallback", True, ("frontier_unavailable",))}
    assert s.breaker.state == "open" and sample(s, "modcascade_frontier_breaker_open") == 1
    assert sample(s, "modcascade_fallbacks_total", reason="frontier_unavailable") == 5


async def test_the_breaker_closes_again_after_a_good_trial() -> None:
    clock = [0.0]
    scripted = Scripted(*[FrontierTransient("529", kind="overloaded")] * 2, answer())
    s = stage(scripted, breaker_failures=2, max_attempts=2)
    s.breaker = type(s.breaker)(2, 30.0, clock=lambda: clock[0])
    s.breaker.on_change = s._breaker_changed
    assert records(await s.process([raw("p1")], no_wait))[0].route == "fallback"
    clock[0] = 31.0
    assert records(await s.process([raw("p2")], no_wait))[0].route == "frontier"
    assert s.breaker.state == "closed" and sample(s, "modcascade_frontier_breaker_open") == 0


async def test_refusals_and_out_of_schema_answers_are_retried_then_fall_back() -> None:
    scripted = Scripted(REFUSAL, answer(category="approved"), REFUSAL)
    s = stage(scripted, max_attempts=3)
    (verdict,) = records(await s.process([raw("p1")], no_wait))
    assert (verdict.route, verdict.flags) == ("fallback", ("frontier_refusal",))
    assert verdict.cost_usd > 0  # the unusable calls were paid for
    assert sample(s, "modcascade_frontier_calls_total", outcome="out_of_schema") == 1
    assert sample(s, "modcascade_frontier_calls_total", outcome="refusal") == 2


async def test_with_fallback_hold_unusable_answers_are_dead_lettered_not_guessed() -> None:
    s = stage(Scripted(default=REFUSAL), HOLD, max_attempts=2)
    record = raw("p1")
    (letter,) = records(await s.process([record], no_wait))
    assert isinstance(letter, DeadLetter) and letter.reason == "frontier_refusal" and letter.attempts == 2
    assert letter.original_bytes() == record.value


async def test_the_budget_runs_out_mid_stream_and_the_rest_falls_back() -> None:
    capped = with_policy(**{"max_requests_per_hour: 2000": "max_requests_per_hour: 2"})
    s = stage(Scripted(default=answer()), capped)
    outs = records(await s.process([raw(f"p{i}") for i in range(5)], no_wait))
    routes = sorted(v.route for v in outs if isinstance(v, Verdict))
    assert routes == ["fallback", "fallback", "fallback", "frontier", "frontier"]
    assert sample(s, "modcascade_fallbacks_total", reason="over_budget") == 3


async def test_with_fallback_hold_an_open_breaker_pauses_instead_of_guessing() -> None:
    scripted = Scripted(FrontierTransient("529", kind="overloaded"), default=answer())
    s = stage(scripted, HOLD, breaker_failures=1, max_attempts=5, breaker_reset_s=0.05)
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(seconds)

    outs = records(await s.process([raw("p1")], wait))
    assert waits and outs[0].route == "frontier"
    assert sample(s, "modcascade_frontier_holds_total", reason="frontier_unavailable") >= 1


async def test_a_bad_api_key_stops_the_worker_but_a_bad_request_falls_back() -> None:
    with pytest.raises(FrontierRejected):
        await stage(Scripted(FrontierRejected("401", kind="auth"))).process([raw("p1")], no_wait)
    (verdict,) = records(await stage(Scripted(FrontierRejected("400", kind="bad_request"))).process([raw("p1")],
                                                                                                     no_wait))
    assert verdict.flags == ("frontier_rejected",)


async def test_an_unreadable_request_is_dead_lettered() -> None:
    s = stage(Scripted())
    (letter,) = records(await s.process([RawRecord(b"{", None, "adjudication", 0, 3)], no_wait))
    assert isinstance(letter, DeadLetter) and letter.stage == "adjudicate.intake" and letter.source_offset == 3


