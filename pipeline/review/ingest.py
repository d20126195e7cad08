"""The stage that fills the review queues: posts, final verdicts and labels → the review database.

It publishes nothing; the stream loop commits a batch's offsets only after :meth:`IngestStage.process` returned,
that is after the database transaction committed. A crash in between re-delivers the batch, and the store's
unique item keys make the second pass a no-op. Records the console cannot decode are skipped (the workers that
own those topics dead-letter them); a database that is down or locked is waited for, with the partitions paused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from sqlalchemy.exc import OperationalError

from pipeline import codec
from pipeline.errors import DecodeError
from pipeline.intake import RawRecord
from pipeline.records import Label, Post, Verdict, utcnow
from pipeline.review.store import ReviewStore
from pipeline.stage import BatchProcessor, Outgoing, Wait

log = logging.getLogger(__name__)

SOURCE_ROLES = ("posts", "verdicts", "labels")


class IngestStage(BatchProcessor):
    def __init__(self, store: ReviewStore, topics: Mapping[str, str], *, retry_s: float = 2.0) -> None:
        self.store = store
        self.roles = {topics[role]: role for role in SOURCE_ROLES}
        self.retry_s = retry_s
        self.skipped = 0
        self.items_created = 0

    async def process(self, records: Sequence[RawRecord], wait: Wait) -> Sequence[Outgoing]:
        posts: list[Post] = []
        verdicts: list[Verdict] = []
        labels: list[Label] = []
        for raw in records:
            role = self.roles.get(raw.topic or "")
            if raw.value is None or role is None:
                continue
            try:
                if role == "posts":
                    posts.append(codec.decode(raw.value, Post))
                elif role == "verdicts":
                    verdicts.append(codec.decode(raw.value, Verdict))
                else:
                    labels.append(codec.decode(raw.value, Label))
            except DecodeError:
                self.skipped += 1
        while True:
            try:
                created = await asyncio.to_thread(self.store.ingest, posts, verdicts, labels, utcnow())
            except OperationalError as exc:
                log.warning("review database unavailable (%s); retrying in %.0f s", exc.orig, self.retry_s)
                await wait(self.retry_s)
                continue
            break
        self.items_created += created
        if created:
            log.info("review queues: %d new items", created)
        return ()

    def published(self, outputs: Sequence[Outgoing]) -> None:
        return None
