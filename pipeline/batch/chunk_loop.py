"""The input, chunk by chunk, through the stream's stages::

    read a chunk ─► ClassifyStage ─► settle: verdicts and dead letters written, escalations routed ─► commit
                        │ classifies the next chunk while this one's urgent escalations are adjudicated
    urgent escalations  ─► AdjudicationStage, at once
    deferrable ones     ─► the deferred journal (for Message Batches: :mod:`pipeline.batch.deferred_batches`)
    no frontier model   ─► the unadjudicated file

A chunk's outputs and the input cursor move together in one checkpoint. An urgent escalation's outcome is
journaled (``urgent.jsonl`` in the state directory) as soon as it is known, so a chunk redone after a kill reuses
it: at most the calls in flight at the moment of the kill are paid twice (the API bills them either way).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from rich.progress import Progress

from pipeline import codec
from pipeline.adjudication.stage import AdjudicationStage
from pipeline.batch.checkpointer import Checkpointer
from pipeline.batch.deferred import DeferredEntry
from pipeline.batch.journal import Journal
from pipeline.batch.progress import RunClock
from pipeline.batch.sources import Chunk, PostSource
from pipeline.cascade.stage import ClassifyStage
from pipeline.intake import RawRecord
from pipeline.records import AdjudicationRequest, DeadLetter, Label, Record, Verdict
from pipeline.stage import Outgoing

_RECORD_TYPES: dict[str, type[Record]] = {"Verdict": Verdict, "Label": Label, "DeadLetter": DeadLetter}


class ChunkLoop:
    def __init__(self, source: PostSource, classify: ClassifyStage, state: Checkpointer, *, chunk_posts: int,
                 adjudicate: AdjudicationStage | None, defer: bool, clock: RunClock, progress: Progress,
                 on_deferred: Callable[[], None]) -> None:
        """``defer``: deferrable escalations go to the deferred journal (else they are adjudicated at once, or
        written unadjudicated without ``adjudicate``); ``on_deferred`` is called when a chunk added some."""
        self.source = source
        self.classify = classify
        self.adjudicate = adjudicate
        self.defer = defer
        self.state = state
        self.chunk_posts = chunk_posts
        self.clock = clock
        self.progress = progress
        self.on_deferred = on_deferred
        path = state.out.state / "urgent.jsonl"
        self.urgent = Journal(path, resume_mark=path.stat().st_size if state.resumed and path.exists() else None)
        self._reuse: dict[str, list[Record]] = {}
        for _, entry in self.urgent.read():  # outcomes already paid for in the chunk the kill interrupted
            if entry["chunk"] == state.ckpt.chunks:
                self._reuse[entry["post_id"]] = [_RECORD_TYPES[r["type"]].model_validate(r["record"])
                                                 for r in entry["records"]]
        self.urgent.reset()

    async def run(self) -> None:
        """Read the input from the checkpoint's cursor to its end."""
        queue: asyncio.Queue[tuple[Chunk, list[Outgoing]] | None] = asyncio.Queue(maxsize=1)

        async def classify_chunks() -> None:
            async for chunk in self.source.chunks(self.chunk_posts, self.state.ckpt.cursor):
                if self.clock.classify_started is None:
                    self.clock.classify_started = time.perf_counter()
                outputs = await self.classify.process(chunk.records, asyncio.sleep)
                await queue.put((chunk, list(outputs)))
            await queue.put(None)

        with self.progress as progress:
            task = progress.add_task(self.source.description, total=self.source.total_units, posts=0, rate=0.0)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(classify_chunks())
                while (item := await queue.get()) is not None:
                    chunk, outputs = item
                    await self._settle(chunk, outputs)
                    self.clock.classified += len(chunk.records)
                    progress.update(task, total=self.source.total_units, completed=chunk.done_units,
                                    posts=self.state.tally.posts, rate=self.clock.posts_per_s)
        self.clock.classify_ended = time.perf_counter()

    async def _settle(self, chunk: Chunk, outputs: list[Outgoing]) -> None:
        state = self.state
        settled: list[Record] = []
        urgent: list[AdjudicationRequest] = []
        deferred: list[AdjudicationRequest] = []
        for out in outputs:
            record = out.record
            if isinstance(record, AdjudicationRequest):
                if self.defer and record.tier == "deferrable":
                    deferred.append(record)
                elif self.adjudicate is not None:
                    urgent.append(record)
                else:
                    settled.append(record)
                    state.tally.escalated["unadjudicated"] += 1
            elif isinstance(record, (Verdict, DeadLetter)):
                settled.append(record)
        for records in await asyncio.gather(*(self._adjudicate_now(request) for request in urgent)):
            settled.extend(records)
        # From here to the checkpoint nothing awaits: outputs, cursor and journal move together.
        state.write(settled)
        state.deferred.append(DeferredEntry(request).to_json() for request in deferred)
        state.tally.posts += len(chunk.records)
        state.tally.escalated["urgent"] += len(urgent)
        state.tally.escalated["deferred"] += len(deferred)
        state.commit(cursor=chunk.cursor, chunks=state.ckpt.chunks + 1,
                     deferred_written=state.ckpt.deferred_written + len(deferred))
        self.urgent.reset()
        self._reuse.clear()
        if deferred:
            self.on_deferred()

    async def _adjudicate_now(self, request: AdjudicationRequest) -> list[Record]:
        if (known := self._reuse.get(request.post.id)) is not None:
            return known
        assert self.adjudicate is not None
        raw = RawRecord(codec.encode(request), key=request.post.id.encode())
        outputs = await self.adjudicate.process([raw], asyncio.sleep)
        records = [out.record for out in outputs]
        entry: dict[str, Any] = {"chunk": self.state.ckpt.chunks, "post_id": request.post.id,
                                 "records": [{"type": type(r).__name__, "record": r.model_dump(mode="json")}
                                             for r in records]}
        self.urgent.append([entry], flush=True)
        return records

    def close(self) -> None:
        self.urgent.close()
