"""The feedback stage: a batch of ``labels`` records in, rows in the retraining dataset, dead letters out.

    decode     each record as a Label               (unreadable → DeadLetter, stage feedback.intake)
    scrub      the text, per the policy's dataset.scrub_pii, before anything is written
    append     to the DatasetStore: durable (fsynced) before process() returns

The stream loop commits the batch's offsets only after process() returned and the dead letters are
acknowledged, so a crash at any point re-delivers the batch; the store's index turns the labels already
written into ``duplicate`` skips, so the dataset has every label once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from pipeline import codec
from pipeline.dataset.pii import scrub
from pipeline.dataset.store import AppendResult, DatasetStore
from pipeline.errors import DecodeError
from pipeline.intake import RawRecord
from pipeline.metrics import Metrics
from pipeline.policy import Policy
from pipeline.records import DeadLetter, Label
from pipeline.stage import BatchProcessor, Outgoing, Wait, dead_letter

INTAKE_STAGE = "feedback.intake"


class FeedbackStage(BatchProcessor):
    def __init__(self, store: DatasetStore, policy: Callable[[], Policy], *, metrics: Metrics) -> None:
        self.store = store
        self.policy = policy
        self.metrics = metrics

    async def process(self, records: Sequence[RawRecord], wait: Wait) -> list[Outgoing]:
        kinds = self.policy().dataset.scrub_pii
        labels: list[Label] = []
        outputs: list[Outgoing] = []
        for raw in records:
            read = read_label(raw)
            if isinstance(read, DeadLetter):
                outputs.append(dead_letter(read, raw))
            else:
                labels.append(read.model_copy(update={"text": scrub(read.text, kinds)}) if kinds else read)
        if labels:
            # Parquet encoding and fsync block: keep the event loop (heartbeats, the policy watcher) running.
            self._count(await asyncio.to_thread(self.store.append, labels))
        return outputs

    def published(self, outputs: Sequence[Outgoing]) -> None:
        for out in outputs:
            if isinstance(out.record, DeadLetter):
                self.metrics.dead_letters.labels(out.record.stage, out.record.reason).inc()

    def _count(self, result: AppendResult) -> None:
        # Counted once the rows are on disk, not at commit: a redelivered batch shows up as duplicates.
        for label in result.written:
            self.metrics.labels_written.labels(label.source).inc()
        for _, reason in result.skipped:
            self.metrics.labels_skipped.labels(reason).inc()


def read_label(raw: RawRecord) -> Label | DeadLetter:
    """Decode a label, or describe why it cannot enter the dataset (with its original bytes)."""
    value = raw.value if raw.value is not None else b""
    try:
        if raw.value is None:
            raise DecodeError("null_value", "record has no value (tombstone)")
        label = codec.decode(value, Label)
        if not label.text.strip():
            raise DecodeError("empty_text", "label text is empty: a label without its post's text cannot train")
        return label
    except DecodeError as exc:
        return DeadLetter.of(value, stage=INTAKE_STAGE, error=exc, reason=exc.reason, key=raw.key, topic=raw.topic,
                             partition=raw.partition, offset=raw.offset)
