"""The audit sample: the policy section, the seeded draw, the Wilson interval, and what the classify and
adjudication stages do with audits (with the fake classifier and a scripted adjudicator)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from pipeline import codec
from pipeline.backends.fake import FakeClassifier
from pipeline.cascade.cache import ScoreCache
from pipeline.cascade.stage import ClassifyStage
from pipeline.errors import FrontierRejected, FrontierTransient, PolicyError
from pipeline.intake import RawRecord
from pipeline.metrics import LivePrecision, Metrics, wilson_interval
from pipeline.policy import Policy, audit_draw, audited, parse_policy
from pipeline.records import AdjudicationRequest, AuditedVerdict, Label, Post, Verdict, verdict_id
from pipeline.retry import Backoff
from tests.unit.test_adjudication_stage import REFUSAL, Scripted, answer, no_wait, records, sample, stage
from tests.unit.test_classify_stage import LABELS, NOW, rule

REPO = Path(__file__).resolve().parents[2]
DEFAULT = (REPO / "policies" / "default.yaml").read_text(encoding="utf-8")
T0 = NOW


def without_audit(text: str) -> str:
    """The default policy without its own audit section (the tests add theirs)."""
    start = text.find("\naudit:")
    if start < 0:
        return text
    end = text.find("\n\n", start + 1)
    return text[:start] + text[end:]


def audit_policy(section: str) -> Policy:
    return parse_policy(without_audit(DEFAULT) + "\naudit:\n" + section, "audit.yaml")


ALL_AUDITED = audit_policy("  seed: 7\n  slm: {allow: 1.0, block: 1.0, review: 1.0}\n"
                           "  budget: {max_requests_per_hour: 100}\n")


# -- the policy section ------------------------------------------------------------------------------------------


def test_a_policy_without_an_audit_section_audits_nothing() -> None:
    policy = parse_policy(without_audit(DEFAULT), "plain.yaml")
    assert not policy.audit.enabled
    assert policy.audit.rate("slm", "block", "spam") == 0.0 == policy.audit.rate("cache", "allow", None)


def test_rates_by_route_decision_and_category() -> None:
    policy = audit_policy("  seed: 1\n  slm:\n    allow: 0.01\n    block: 0.05\n    review: 0.2\n"
                          "    categories: {hate: 0.5}\n  cache: {allow: 0.001}\n")
    a = policy.audit
    assert a.enabled and a.seed == 1
    assert a.rate("slm", "allow", None) == 0.01
    assert a.rate("slm", "block", "spam") == 0.05
    assert a.rate("slm", "block", "hate") == 0.5  # the category overrides the decision's rate
    assert a.rate("slm", "review", "self_harm") == 0.2
    assert a.rate("cache", "allow", None) == 0.001 and a.rate("cache", "block", "hate") == 0.0
    assert a.rate("frontier", "block", "spam") == 0.0 == a.rate("fallback", "allow", None)  # only small-model routes


def test_cache_rates_default_to_the_slm_rates() -> None:
    a = audit_policy("  slm: {allow: 0.02, block: 0.1}\n").audit
    assert a.cache is None
    assert a.rate("cache", "allow", None) == 0.02 and a.rate("cache", "block", "spam") == 0.1


@pytest.mark.parametrize(("section", "expected"), [
    ("  slm: {allow: 1.5}\n", "audit.slm.allow: 1.5 is invalid"),
    ("  slm: {allow: 0.1, allows: 0.2}\n", "audit.slm.allows: unknown key 'allows'"),
    ("  seed: -1\n", "audit.seed"),
    ("  budget: {max_usd_per_hour: -2}\n", "audit.budget.max_usd_per_hour"),
    ("  slm: {categories: {spamm: 0.5}}\n", "audit.slm.categories.spamm: category 'spamm' is not in "
                                            "taxonomy.categories"),
    ("  cache: {categories: {safe: 0.5}}\n", "audit.cache.categories.safe"),
])
def test_a_bad_audit_section_is_rejected_naming_the_field(section: str, expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        audit_policy(section)
    assert expected in str(caught.value)


def test_a_misspelt_category_gets_a_hint() -> None:
    with pytest.raises(PolicyError, match="did you mean 'spam'"):
        audit_policy("  slm: {categories: {spamm: 0.5}}\n")


def test_the_audit_section_is_part_of_the_policy_version() -> None:
    one = audit_policy("  seed: 1\n  slm: {allow: 0.01}\n")
    two = audit_policy("  seed: 2\n  slm: {allow: 0.01}\n")
    assert one.version != two.version


# -- the draw --------------------------------------------------------------------------------------------------


def test_the_draw_is_fixed_by_seed_and_post_id() -> None:
    assert audit_draw(1, "p1") == audit_draw(1, "p1")
    assert audit_draw(1, "p1") != audit_draw(2, "p1")
    assert audit_draw(1, "p1") != audit_draw(1, "p2")
    # Pinned: a change of the hash would silently redraw every deployed sample.
    assert audit_draw(0, "post-1") == 0.7313776032026278 and audit_draw(17, "p42") == 0.4647628081608824
    assert 0.0 <= audit_draw(0, "") < 1.0


@given(st.integers(min_value=0, max_value=2**63), st.text(max_size=50))
def test_every_draw_is_in_the_unit_interval(seed: int, post_id: str) -> None:
    assert 0.0 <= audit_draw(seed, post_id) < 1.0


def test_a_rate_r_over_n_posts_draws_about_r_n_and_samples_are_nested() -> None:
    a = audit_policy("  seed: 11\n  slm: {allow: 0.05}\n").audit
    wider = audit_policy("  seed: 11\n  slm: {allow: 0.2}\n").audit
    n = 20_000
    ids = [f"post-{i}" for i in range(n)]
    drawn = {i for i in ids if audited(a, i, route="slm", decision="allow", category=None)}
    # Binomial(n, r): mean r·n = 1000, sd = sqrt(n·r·(1-r)) ≈ 30.8; 5 sd either side.
    sd = math.sqrt(n * 0.05 * 0.95)
    assert abs(len(drawn) - n * 0.05) < 5 * sd
    assert drawn == {i for i in ids if audit_draw(11, i) < 0.05}  # exactly the hash rule
    assert drawn <= {i for i in ids if audited(wider, i, route="slm", decision="allow", category=None)}
    assert not any(audited(a, i, route="slm", decision="block", category="spam") for i in ids)  # rate 0


# -- the Wilson interval -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("successes", "n", "low", "high"), [
    (8, 10, 0.4902, 0.9433),  # the textbook example
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (50, 100, 0.4038, 0.5962),
    (1, 1, 0.2065, 1.0),
])
def test_wilson_interval_matches_reference_values(successes: int, n: int, low: float, high: float) -> None:
    interval = wilson_interval(successes, n)
    assert (interval.low, interval.high) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))
    assert interval.estimate == successes / n and (interval.successes, interval.n) == (successes, n)


def test_wilson_interval_of_nothing_is_the_whole_range_and_bad_counts_are_errors() -> None:
    empty = wilson_interval(0, 0)
    assert (empty.low, empty.high) == (0.0, 1.0)
    for successes, n in ((3, 2), (-1, 5), (0, -1)):
        with pytest.raises(ValueError, match="successes"):
            wilson_interval(successes, n)


@given(st.integers(min_value=1, max_value=100_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_holds_the_estimate_and_stays_in_range(counts: tuple[int, int]) -> None:
    successes, n = counts
    i = wilson_interval(successes, n)
    assert 0.0 <= i.low <= i.estimate <= i.high <= 1.0
    assert i.low < i.high
    wider = wilson_interval(successes, n, z=3.0)
    assert wider.low <= i.low and wider.high >= i.high


def test_the_interval_narrows_as_the_sample_grows() -> None:
    widths = [wilson_interval(9 * k, 10 * k) for k in (1, 10, 100, 1000)]
    assert [w.high - w.low for w in widths] == sorted((w.high - w.low for w in widths), reverse=True)


def test_live_precision_gauges_follow_the_running_counts() -> None:
    metrics = Metrics.create(CollectorRegistry())
    live = LivePrecision(metrics.live_precision)
    for agrees in (True, True, True, False):
        live.record("spam", agrees)
    assert live.record("none", True) == wilson_interval(1, 1)

    def gauge(category: str, bound: str) -> float | None:
        return metrics.registry.get_sample_value("modcascade_audit_live_precision",
                                                 {"category": category, "bound": bound})

    expected = wilson_interval(3, 4)
    assert gauge("spam", "estimate") == 0.75
    assert (gauge("spam", "low"), gauge("spam", "high")) == (pytest.approx(expected.low), pytest.approx(expected.high))
    assert gauge("none", "estimate") == 1.0 and gauge("none", "high") == 1.0


# -- the classify stage ------------------------------------------------------------------------------------------


def classify_stage(policy: Policy, metrics: Metrics, *, audit: bool = True) -> ClassifyStage:
    return ClassifyStage(FakeClassifier(LABELS, rule=rule, model_name="minilm-test", model_version="m-1"),
                         lambda: policy, cache=ScoreCache(100, 60), metrics=metrics, max_text_bytes=1000,
                         backoff=Backoff(base_s=1.0, max_s=8.0), clock=lambda: NOW, audit=audit)


def post(post_id: str, text: str, offset: int = 0) -> RawRecord:
    return RawRecord(codec.dumps({"id": post_id, "text": text}), post_id.encode(), "posts", 0, offset)


async def test_a_sampled_final_verdict_is_published_and_also_sent_as_an_audit() -> None:
    metrics = Metrics.create(CollectorRegistry())
    stage = classify_stage(ALL_AUDITED, metrics)
    outputs = await stage.process([post("p1", "BUY FOLLOWERS bit.ly/x"), post("p2", "great deal on my old bike", 1),
                                   post("p3", "BUY FOLLOWERS bit.ly/x", 2)], no_wait)
    by_topic = [(o.role, o.key, type(o.record).__name__) for o in outputs]
    assert by_topic == [("verdicts", b"p1", "Verdict"), ("adjudication", b"p1", "AdjudicationRequest"),
                        ("adjudication", b"p2", "AdjudicationRequest"),  # borderline: an escalation, no audit
                        ("verdicts", b"p3", "Verdict"), ("adjudication", b"p3", "AdjudicationRequest")]
    verdict, check = outputs[0].record, outputs[1].record
    assert isinstance(verdict, Verdict) and isinstance(check, AdjudicationRequest)
    assert check.audit and check.audited == AuditedVerdict(verdict_id=verdict.verdict_id, decision="block",
                                                           category="spam", route="slm")
    assert (check.post.id, check.scores, check.policy_version, check.tier) == ("p1", verdict.scores,
                                                                                ALL_AUDITED.version, "deferrable")
    escalation = outputs[2].record
    assert isinstance(escalation, AdjudicationRequest) and not escalation.audit and escalation.audited is None
    repeat = outputs[4].record
    assert isinstance(repeat, AdjudicationRequest) and repeat.audited is not None and repeat.audited.route == "cache"
    assert codec.decode(outputs[1].value, AdjudicationRequest) == check  # survives the codec

    stage.published(outputs)
    assert metrics.registry.get_sample_value("modcascade_audit_requests_total",
                                             {"route": "slm", "category": "spam"}) == 1
    assert metrics.registry.get_sample_value("modcascade_audit_requests_total",
                                             {"route": "cache", "category": "spam"}) == 1
    # Audits are not escalations: only the borderline post counts as one.
    assert metrics.registry.get_sample_value("modcascade_escalations_total", {"category": "spam"}) == 1


async def test_the_audit_choice_is_the_draw_and_a_redelivery_repeats_it() -> None:
    policy = audit_policy("  seed: 5\n  slm: {allow: 0.3}\n")
    stage = classify_stage(policy, Metrics.create(CollectorRegistry()))
    batch = [post(f"p{i}", "hello neighbours", i) for i in range(200)]
    first = {o.key.decode() for o in await stage.process(batch, no_wait) if o.role == "adjudication"}
    again = {o.key.decode() for o in await stage.process(batch, no_wait) if o.role == "adjudication"}
    assert first == again == {f"p{i}" for i in range(200) if audit_draw(5, f"p{i}") < 0.3}
    assert 0 < len(first) < 200


async def test_audits_are_off_unless_the_stage_is_asked_for_them() -> None:
    stage = classify_stage(ALL_AUDITED, Metrics.create(CollectorRegistry()), audit=False)
    outputs = await stage.process([post("p1", "BUY FOLLOWERS bit.ly/x"), post("p2", "hello neighbours", 1)], no_wait)
    assert [o.role for o in outputs] == ["verdicts", "verdicts"]


def test_an_audit_request_must_name_its_verdict() -> None:
    base = {"post": Post(id="p", text="t"), "scores": {"safe": 1.0}, "candidate_category": None, "model": "m",
            "model_version": "1", "policy": "default", "policy_version": "v", "ingested_at": T0}
    with pytest.raises(ValueError, match="names the verdict it audits"):
        AdjudicationRequest(**base, audit=True)
    with pytest.raises(ValueError, match="names the verdict it audits"):
        AdjudicationRequest(**base, audited=AuditedVerdict(verdict_id="v", decision="allow", category=None,
                                                           route="slm"))


# -- the adjudication stage --------------------------------------------------------------------------------------


def audit_raw(post_id: str, *, decision: str = "block", category: str | None = "spam", route: str = "slm",
              policy: Policy = ALL_AUDITED) -> RawRecord:
    audited_verdict = AuditedVerdict.model_validate({"verdict_id": verdict_id(post_id, policy.version),
                                                     "decision": decision, "category": category, "route": route})
    req = AdjudicationRequest(post=Post(id=post_id, text="BUY FOLLOWERS bit.ly/x"), scores={"spam": 0.95,
                              "safe": 0.05}, candidate_category=category, model="mini", model_version="m-1",
                              policy="default", policy_version=policy.version, tier="deferrable", ingested_at=T0,
                              enqueued_at=T0, audit=True, audited=audited_verdict)
    return RawRecord(codec.encode(req), post_id.encode(), "adjudication", 0, 0)


async def test_an_answered_audit_is_one_label_marked_audit_and_never_a_verdict() -> None:
    s = stage(Scripted(answer("spam", "block"), answer("safe", "allow")), ALL_AUDITED)
    outs = await s.process([audit_raw("p1"), audit_raw("p2")], no_wait)
    assert [o.role for o in outs] == ["labels", "labels"]
    agree, disagree = records(outs)
    assert isinstance(agree, Label) and isinstance(disagree, Label)
    assert (agree.source, agree.audit, agree.agrees, agree.label) == ("frontier", True, True, "spam")
    assert (disagree.audit, disagree.agrees, disagree.label) == (True, False, "safe")
    assert agree.verdict_id == verdict_id("p1", ALL_AUDITED.version) and agree.rationale == "because"
    assert agree.audited is not None and agree.audited.category == "spam"
    assert agree.cost_usd is not None and agree.cost_usd > 0
    assert sample(s, "modcascade_audit_cost_usd_total") == pytest.approx(agree.cost_usd + (disagree.cost_usd or 0))

    s.published(outs)
    assert sample(s, "modcascade_audit_outcomes_total", route="slm", category="spam", agreement="agree") == 1
    assert sample(s, "modcascade_audit_outcomes_total", route="slm", category="spam", agreement="disagree") == 1
    assert sample(s, "modcascade_audit_live_precision", category="spam", bound="estimate") == 0.5
    assert sample(s, "modcascade_decisions_total", decision="block", category="spam", route="frontier") == 0


async def test_an_allowed_verdict_is_confirmed_by_the_safe_class() -> None:
    s = stage(Scripted(answer("safe", "allow"), answer("spam", "allow")), ALL_AUDITED)
    confirmed, missed = records(await s.process([audit_raw("p1", decision="allow", category=None),
                                                 audit_raw("p2", decision="allow", category=None)], no_wait))
    assert confirmed.agrees is True and missed.agrees is False  # categories compared, not decisions


async def test_audits_spend_their_own_budget_and_are_skipped_beyond_it() -> None:
    policy = audit_policy("  slm: {block: 1.0}\n  budget: {max_requests_per_hour: 2}\n")
    scripted = Scripted(default=answer())
    s = stage(scripted, policy)
    outs = await s.process([audit_raw(f"p{i}", policy=policy) for i in range(5)], no_wait)
    assert [o.role for o in outs] == ["labels", "labels"] and len(scripted.requests) == 2
    assert sample(s, "modcascade_audit_skipped_total", reason="over_budget") == 3
    assert sample(s, "modcascade_fallbacks_total", reason="over_budget") == 0
    # The escalation budget is untouched: escalations still reach the frontier.
    assert s._budget is not None and s._budget.requests_in_window == 0
    escalation = AdjudicationRequest(post=Post(id="e1", text="x"), scores={"spam": 0.5, "safe": 0.5},
                                     candidate_category="spam", model="m", model_version="1", policy="default",
                                     policy_version=policy.version, ingested_at=T0)
    (verdict, _label) = records(await s.process([RawRecord(codec.encode(escalation), b"e1", "adjudication", 0, 0)],
                                                no_wait))
    assert verdict.route == "frontier"


async def test_an_audit_with_no_budget_at_all_makes_no_call() -> None:
    policy = audit_policy("  slm: {block: 1.0}\n  budget: {max_requests_per_hour: 0}\n")
    scripted = Scripted()
    s = stage(scripted, policy)
    assert await s.process([audit_raw("p1", policy=policy)], no_wait) == []
    assert scripted.requests == [] and sample(s, "modcascade_audit_skipped_total", reason="over_budget") == 1


@pytest.mark.parametrize("fallback", ["small_model", "hold"])
async def test_an_audit_the_frontier_cannot_answer_is_skipped_never_a_fallback_or_a_hold(fallback: str) -> None:
    policy = audit_policy("  slm: {block: 1.0}\n") if fallback == "small_model" else parse_policy(
        without_audit(DEFAULT).replace("fallback: small_model", "fallback: hold") + "\naudit:\n  slm: {block: 1.0}\n",
        "hold.yaml")
    down = FrontierTransient("overloaded", kind="overloaded")
    s = stage(Scripted(down, down, down, down, REFUSAL, REFUSAL, REFUSAL, REFUSAL,
                       FrontierRejected("bad request", kind="bad_request")), policy)
    for reason in ("frontier_unavailable", "frontier_refusal", "frontier_rejected"):
        assert await s.process([audit_raw("p1", policy=policy)], no_wait) == []  # no_wait: a hold would fail here
        assert sample(s, "modcascade_audit_skipped_total", reason=reason) == 1
    assert sample(s, "modcascade_fallbacks_total", reason="frontier_unavailable") == 0
    assert sample(s, "modcascade_audit_cost_usd_total") == pytest.approx(
        4 * ALL_AUDITED.prices.frontier.cost_usd(10, 1))  # the refusals were paid for


async def test_a_fatal_rejection_still_stops_the_worker_on_an_audit() -> None:
    s = stage(Scripted(FrontierRejected("no key", kind="auth")), ALL_AUDITED)
    with pytest.raises(FrontierRejected):
        await s.process([audit_raw("p1")], no_wait)

