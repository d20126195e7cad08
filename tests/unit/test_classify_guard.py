"""The classify stage under a tripped action guard: the guarded category's would-be blocks are escalated (or
reviewed), marked ``guard``, counted; nothing is dropped; other posts are decided as usual."""

from __future__ import annotations

import asyncio
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline import codec
from pipeline.backends.fake import FakeClassifier
from pipeline.cascade.cache import ScoreCache
from pipeline.cascade.stage import ClassifyStage
from pipeline.intake import RawRecord
from pipeline.metrics import Metrics
from pipeline.policy import GuardBoard, Policy, load_policy
from pipeline.records import AdjudicationRequest, GuardState, Verdict
from pipeline.retry import Backoff

REPO = Path(__file__).resolve().parents[2]
LABELS = ("safe", "spam", "harassment", "hate", "sexual", "violence", "self_harm")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = load_policy(REPO / "policies" / "default.yaml")


def scores(**top: float) -> dict[str, float]:
    rest = (1.0 - sum(top.values())) / (len(LABELS) - len(top))
    return {label: top.get(label, rest) for label in LABELS}


SCRIPT = {
    "spam": scores(spam=0.95),
    "hate": scores(hate=0.95),
    "band": scores(spam=0.5, safe=0.45),
    "fine": scores(safe=0.97),
}


def make_stage(policy: Policy, guards: GuardBoard | None, metrics: Metrics) -> ClassifyStage:
    classifier = FakeClassifier(LABELS, rule=lambda text: SCRIPT[text.split("-")[0]])
    tripped = guards.tripped if guards is not None else None
    return ClassifyStage(classifier, lambda: policy, cache=ScoreCache(100, 60), metrics=metrics, max_text_bytes=1000,
                         backoff=Backoff(base_s=1.0, max_s=8.0), clock=lambda: NOW, guards=tripped)


def raws(*texts: str) -> list[RawRecord]:
    return [RawRecord(codec.dumps({"id": f"p{i}", "text": t}), f"p{i}".encode(), "posts", 0, i)
            for i, t in enumerate(texts)]


async def no_wait(seconds: float) -> None:
    raise AssertionError("no backoff expected")


def board(*categories: str, policy: str = "default") -> GuardBoard:
    guards = GuardBoard()
    for category in categories:
        guards.apply(GuardState(policy=policy, category=category, tripped=True, by="monitor", changed_at=NOW))
    return guards


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("divert", ["adjudication", "review"])
async def test_a_tripped_guard_diverts_its_categorys_blocks_and_nothing_else(divert: str) -> None:
    policy = Policy.model_validate({**POLICY.model_dump(), "guard": {"divert": divert}})
    metrics = Metrics.create(CollectorRegistry())
    stage = make_stage(policy, board("spam"), metrics)
    outputs = await stage.process(raws("spam-1", "hate-1", "band-1", "fine-1", "spam-2"), no_wait)
    stage.published(outputs)

    by_post = {(o.key or b"").decode(): o.record for o in outputs}
    assert sorted(by_post) == ["p0", "p1", "p2", "p3", "p4"]  # one output per post: nothing dropped
    for post in ("p0", "p4"):
        record = by_post[post]
        if divert == "adjudication":
            assert isinstance(record, AdjudicationRequest)
            assert (record.candidate_category, record.guard, record.tier) == ("spam", "spam", "deferrable")
        else:
            assert isinstance(record, Verdict)
            assert (record.decision, record.category, record.guard, record.route) == ("review", "spam", "spam", "slm")
    hate, band, fine = by_post["p1"], by_post["p2"], by_post["p3"]
    assert isinstance(hate, Verdict) and (hate.decision, hate.guard) == ("block", None)
    assert isinstance(band, AdjudicationRequest) and band.guard is None
    assert isinstance(fine, Verdict) and (fine.decision, fine.guard) == ("allow", None)

    assert sample(metrics, "modcascade_guard_diverted_total", policy="default", category="spam", to=divert) == 2
    if divert == "review":
        assert sample(metrics, "modcascade_guard_verdicts_total", category="spam", decision="review",
                      route="slm") == 2


async def test_guards_of_another_policy_or_none_leave_decisions_alone() -> None:
    metrics = Metrics.create(CollectorRegistry())
    for guards in (None, GuardBoard(), board("spam", policy="strict")):
        stage = make_stage(POLICY, guards, metrics)
        outputs = await stage.process(raws("spam-1"), no_wait)
        [verdict] = [o.record for o in outputs]
        assert isinstance(verdict, Verdict) and (verdict.decision, verdict.guard) == ("block", None)


async def test_clearing_the_guard_restores_blocking_from_the_next_batch() -> None:
    guards = board("spam")
    stage = make_stage(POLICY, guards, Metrics.create(CollectorRegistry()))
    [first] = await stage.process(raws("spam-1"), no_wait)
    assert isinstance(first.record, AdjudicationRequest)
    guards.apply(GuardState(policy="default", category="spam", tripped=False, by="operator", changed_at=NOW))
    [second] = await stage.process(raws("spam-1"), no_wait)
    assert isinstance(second.record, Verdict) and second.record.decision == "block"


def test_the_guards_callable_is_asked_once_per_batch_with_the_policy_name() -> None:
    asked: list[tuple[str, datetime]] = []

    def tripped(policy: str, now: datetime) -> AbstractSet[str]:
        asked.append((policy, now))
        return frozenset()

    stage = ClassifyStage(FakeClassifier(LABELS, rule=lambda t: SCRIPT["fine"]), lambda: POLICY,
                          cache=ScoreCache(10, 60), metrics=Metrics.create(CollectorRegistry()), max_text_bytes=100,
                          backoff=Backoff(base_s=1.0, max_s=2.0), clock=lambda: NOW, guards=tripped)
    asyncio.run(stage.process(raws("fine-1", "fine-2"), no_wait))
    assert asked == [("default", NOW)]
