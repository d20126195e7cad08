"""The feedback stage without a broker: decode, scrub, append; bad records become dead letters."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline import codec
from pipeline.dataset.feedback import INTAKE_STAGE, FeedbackStage
from pipeline.dataset.store import DatasetStore
from pipeline.intake import RawRecord
from pipeline.metrics import Metrics
from pipeline.policy import Policy, load_policy
from pipeline.records import DeadLetter, Label
from tests.support.samples import SCORES, T0

REPO = Path(__file__).resolve().parents[2]
POLICY = load_policy(REPO / "policies" / "default.yaml")


def raw(value: bytes | None, offset: int = 0) -> RawRecord:
    return RawRecord(value, b"key", "labels", 0, offset)


def encoded(post_id: str, text: str = "buy now", source: str = "frontier") -> bytes:
    return codec.encode(Label(post_id=post_id, text=text, label="spam", source=source,  # type: ignore[arg-type]
                              model_scores=SCORES, labelled_at=T0))


async def no_wait(seconds: float) -> None:
    raise AssertionError("the feedback stage never backs off")


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create(CollectorRegistry())


def stage_for(tmp_path: Path, metrics: Metrics, policy: Policy = POLICY) -> FeedbackStage:
    return FeedbackStage(DatasetStore(tmp_path), lambda: policy, metrics=metrics)


async def test_labels_are_written_before_process_returns(tmp_path: Path, metrics: Metrics) -> None:
    stage = stage_for(tmp_path, metrics)
    outputs = await stage.process([raw(encoded("a")), raw(encoded("b"), 1)], no_wait)
    assert outputs == []
    assert sorted(DatasetStore(tmp_path).current()["post_id"].to_pylist()) == ["a", "b"]
    assert metrics.registry.get_sample_value("modcascade_labels_written_total", {"source": "frontier"}) == 2


async def test_pii_is_scrubbed_per_the_policy_before_writing(tmp_path: Path, metrics: Metrics) -> None:
    text = "mail jane@example.com or call 555-123-4567, @jane, www.example.com"
    await stage_for(tmp_path, metrics).process([raw(encoded("a", text))], no_wait)
    assert DatasetStore(tmp_path).current()["text"].to_pylist() == ["mail [EMAIL] or call [PHONE], [HANDLE], [URL]"]
    for path in DatasetStore(tmp_path).files():
        assert b"jane@example.com" not in path.read_bytes()


async def test_without_scrub_rules_the_text_is_kept(tmp_path: Path, metrics: Metrics) -> None:
    policy = POLICY.model_copy(update={"dataset": POLICY.dataset.model_copy(update={"scrub_pii": ()})})
    await stage_for(tmp_path, metrics, policy).process([raw(encoded("a", "mail jane@example.com"))], no_wait)
    assert DatasetStore(tmp_path).current()["text"].to_pylist() == ["mail jane@example.com"]


@pytest.mark.parametrize(("value", "reason"), [
    (b'{"post_id": "a", "text": ', "invalid_json"),
    (b'{"post_id": "a", "text": "t", "source": "frontier"}', "invalid_record"),  # no label
    (b'{"post_id": "a", "text": "t", "label": "spam", "source": "oracle"}', "invalid_record"),
    (b'{"post_id": "a", "text": "  ", "label": "spam", "source": "human"}', "empty_text"),
    (b"\xff\xfe", "invalid_utf8"),
    (None, "null_value"),
])
async def test_unreadable_labels_become_dead_letters_and_the_rest_is_written(
    tmp_path: Path, metrics: Metrics, value: bytes | None, reason: str
) -> None:
    stage = stage_for(tmp_path, metrics)
    outputs = await stage.process([raw(value, 7), raw(encoded("good"), 8)], no_wait)
    assert [o.role for o in outputs] == ["dead_letter"]
    letter = outputs[0].record
    assert isinstance(letter, DeadLetter)
    assert (letter.stage, letter.reason, letter.source_offset) == (INTAKE_STAGE, reason, 7)
    assert letter.original_bytes() == (value or b"")
    assert DatasetStore(tmp_path).current()["post_id"].to_pylist() == ["good"]
    stage.published(outputs)
    assert metrics.registry.get_sample_value("modcascade_dead_letters_total",
                                             {"stage": INTAKE_STAGE, "reason": reason}) == 1


async def test_a_redelivered_batch_is_counted_as_duplicates(tmp_path: Path, metrics: Metrics) -> None:
    batch = [raw(encoded(f"p{i}"), i) for i in range(10)]
    await stage_for(tmp_path, metrics).process(batch, no_wait)
    await stage_for(tmp_path, metrics).process(batch, no_wait)  # a restarted worker re-reads the batch
    assert DatasetStore(tmp_path).rows().num_rows == 10
    assert metrics.registry.get_sample_value("modcascade_labels_skipped_total", {"reason": "duplicate"}) == 10
