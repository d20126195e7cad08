"""What each result of a Message Batch becomes (pipeline.batch.deferred.settle): the frontier verdict at half
price, a resubmission, or the policy's fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.adjudication.backends import FrontierReply, TokenUsage
from pipeline.adjudication.message_batches import BatchItem
from pipeline.adjudication.outcomes import MESSAGE_BATCHES_DISCOUNT
from pipeline.adjudication.prompt import TOOL_NAME
from pipeline.batch.deferred import DeferredEntry, settle
from pipeline.policy import load_policy
from pipeline.records import AdjudicationRequest, DeadLetter, Label, Post, Verdict
from tests.support.samples import SCORES, T0

REPO = Path(__file__).resolve().parents[2]
POLICY = load_policy(REPO / "policies" / "default.yaml")
HOLD = POLICY.model_copy(update={"fallback": "hold"})
USAGE = TokenUsage(input=1000, output=100)


def entry(attempt: int = 0, spent: float = 0.0) -> DeferredEntry:
    request = AdjudicationRequest(post=Post(id="p1", text="buy followers now"), scores=SCORES,
                                  candidate_category="spam", model="mini", model_version="m-1", policy=POLICY.name,
                                  policy_version=POLICY.version, tier="deferrable", attempt=attempt, ingested_at=T0,
                                  enqueued_at=T0)
    return DeferredEntry(request, spent)


def answered(category: str = "spam", decision: str = "block") -> BatchItem:
    reply = FrontierReply([{"type": "tool_use", "id": "t", "name": TOOL_NAME,
                            "input": {"category": category, "decision": decision, "rationale": "an ad"}}],
                          "tool_use", USAGE, "claude-test-1", "msg_1")
    return BatchItem("run-0", "succeeded", reply=reply)


def full_price() -> float:
    return POLICY.prices.frontier.cost_usd(USAGE.input, USAGE.output)


def test_a_usable_answer_is_the_frontier_verdict_and_label_at_the_batch_price() -> None:
    settled = settle(answered(), entry(), POLICY, max_attempts=3, now=T0)
    verdict, label = settled.records
    assert isinstance(verdict, Verdict) and isinstance(label, Label)
    assert (verdict.route, verdict.decision, verdict.category, verdict.rationale) == ("frontier", "block", "spam",
                                                                                      "an ad")
    assert verdict.cost_usd == pytest.approx(full_price() * MESSAGE_BATCHES_DISCOUNT)
    assert (label.label, label.source) == ("spam", "frontier")
    assert settled.retry is None


def test_the_cost_of_earlier_submissions_is_part_of_the_verdict() -> None:
    settled = settle(answered(), entry(attempt=1, spent=0.01), POLICY, max_attempts=3, now=T0)
    verdict = settled.records[0]
    assert isinstance(verdict, Verdict)
    assert verdict.cost_usd == pytest.approx(0.01 + full_price() * MESSAGE_BATCHES_DISCOUNT)


@pytest.mark.parametrize("item", [BatchItem("run-0", "expired"), BatchItem("run-0", "canceled"),
                                  BatchItem("run-0", "errored", error_type="overloaded_error"), None],
                         ids=["expired", "canceled", "overloaded", "missing"])
def test_a_request_the_service_did_not_run_goes_round_again_then_falls_back(item: BatchItem | None) -> None:
    again = settle(item, entry(attempt=0), POLICY, max_attempts=2, now=T0)
    assert again.records == [] and again.retry is not None and again.retry.request.attempt == 1
    last = settle(item, again.retry, POLICY, max_attempts=2, now=T0)
    assert last.retry is None
    verdict = last.records[0]
    assert isinstance(verdict, Verdict) and verdict.route == "fallback"
    assert verdict.flags == ("frontier_expired",) if item is None or item.outcome == "expired" else (
        "frontier_unavailable",)


def test_under_hold_a_request_the_service_did_not_run_is_never_given_up() -> None:
    settled = settle(BatchItem("run-0", "expired"), entry(attempt=9), HOLD, max_attempts=2, now=T0)
    assert settled.records == [] and settled.retry is not None


def test_an_unusable_answer_is_retried_then_falls_back_with_what_it_cost() -> None:
    refusal = BatchItem("run-0", "succeeded", reply=FrontierReply([], "refusal", USAGE, "claude-test-1", "msg_2"))
    first = settle(refusal, entry(), POLICY, max_attempts=2, now=T0)
    assert first.retry is not None and first.retry.spent == pytest.approx(full_price() / 2)
    last = settle(refusal, first.retry, POLICY, max_attempts=2, now=T0)
    verdict = last.records[0]
    assert isinstance(verdict, Verdict)
    assert (verdict.route, verdict.flags) == ("fallback", ("frontier_refusal",))
    assert verdict.cost_usd == pytest.approx(full_price())


def test_a_rejected_request_falls_back_at_once_or_is_dead_lettered_under_hold() -> None:
    rejected = BatchItem("run-0", "errored", error_type="invalid_request_error", error_message="bad params")
    verdict = settle(rejected, entry(), POLICY, max_attempts=3, now=T0).records[0]
    assert isinstance(verdict, Verdict) and verdict.flags == ("frontier_rejected",)
    letter = settle(rejected, entry(), HOLD, max_attempts=3, now=T0).records[0]
    assert isinstance(letter, DeadLetter)
    assert (letter.reason, letter.stage) == ("frontier_rejected", "adjudicate.answer")
    assert "bad params" in letter.message
    assert AdjudicationRequest.model_validate_json(letter.original_bytes()).post.id == "p1"


def test_a_journal_entry_survives_its_round_trip() -> None:
    original = entry(attempt=2, spent=0.25)
    assert DeferredEntry.from_json(original.to_json()) == original
