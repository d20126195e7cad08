"""The batch run: the stream's cascade over a file or a topic range, resumable, with deferred escalations.

    read a chunk ─► ClassifyStage (the stream's intake, cache, classify, decide, route) ─► settle, commit
                        │ classifies the next chunk while this one's urgent escalations are adjudicated
    urgent escalations  ─► AdjudicationStage (the stream's: budget, breaker, retries, fallback), at once
    deferrable ones     ─► the deferred journal ─► Message Batches (half price) ─► polled ─► merged
    no frontier model   ─► the unadjudicated file (AdjudicationRequest records, as on the adjudication topic)

Nothing here decides anything: the stream's stages do, so a post gets the same decision either way. A run is put
together from parts with one job each, and stopped at any point (SIGKILL included) resumes without losing a post,
writing one twice, or paying again for what was adjudicated:

    checkpointer.py      the outputs, the deferred journal, the tally and the checkpoint, kept in step
    chunk_loop.py        the input chunk by chunk through the stages; urgent outcomes journaled as they come
    deferred_batches.py  the Message Batches lifecycle: submit, poll, recover a submission, merge
    progress.py          the run's clock and progress bar
    report.py            the tally and the closing report
    memory.py            the peak-memory instrument the caller injects (or none: "not measured")

The source is any :class:`~pipeline.batch.sources.PostSource`: this module loads no Kafka client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rich.console import Console

from pipeline import codec
from pipeline.adjudication.message_batches import MessageBatches
from pipeline.adjudication.stage import AdjudicationStage
from pipeline.batch.checkpointer import Checkpointer
from pipeline.batch.chunk_loop import ChunkLoop
from pipeline.batch.deferred_batches import DeferredBatches
from pipeline.batch.memory import PeakMemory
from pipeline.batch.options import BatchOptions, Outputs
from pipeline.batch.progress import RunClock, progress_bar
from pipeline.batch.report import BatchReport
from pipeline.batch.sources import PostSource
from pipeline.cascade.stage import ClassifyStage
from pipeline.metrics import Metrics
from pipeline.policy import Policy
from pipeline.records import utcnow
from pipeline.retry import Backoff

__all__ = ["BatchOptions", "BatchRun", "Outputs"]


class BatchRun:
    """One invocation of a batch run (fresh or resumed). Build, then ``await run()``."""

    def __init__(
        self,
        source: PostSource,
        policy: Policy,
        classify: ClassifyStage,
        options: BatchOptions,
        *,
        identity: dict[str, Any],
        adjudicate: AdjudicationStage | None = None,
        batches: MessageBatches | None = None,
        metrics: Metrics,
        console: Console,
        backoff: Backoff | None = None,
        clock: Callable[[], datetime] = utcnow,
        memory: PeakMemory | None = None,
    ) -> None:
        """``batches`` (used only with ``adjudicate``) sends deferrable escalations to Message Batches; without it
        they are adjudicated at once. ``memory`` measures the peak memory the report states (none: not measured)."""
        self.source = source
        self.policy = policy
        self.classify = classify
        self.adjudicate = adjudicate
        self.options = options
        self.console = console
        self.memory = memory
        self.state = Checkpointer(options.outputs, dict(identity), overwrite=options.overwrite)
        self.clock = RunClock()
        self.deferred = (DeferredBatches(batches, self.state, policy, options, metrics=metrics,
                                         backoff=backoff or Backoff(base_s=1.0, max_s=60.0), clock=clock)
                         if batches is not None and adjudicate is not None else None)

    async def run(self) -> BatchReport:
        state, deferred = self.state, self.deferred
        state.open()
        chunks = ChunkLoop(self.source, self.classify, state, chunk_posts=self.options.chunk_posts,
                           adjudicate=self.adjudicate, defer=deferred is not None, clock=self.clock,
                           progress=progress_bar(self.console, enabled=self.options.progress),
                           on_deferred=deferred.wake if deferred is not None else _nothing)
        try:
            try:
                async with asyncio.TaskGroup() as tasks:
                    batches = tasks.create_task(deferred.run()) if deferred is not None else None
                    if not state.ckpt.input_done:
                        await chunks.run()
                        state.commit(input_done=True)
                        if deferred is not None:
                            deferred.wake()
                    if batches is not None:
                        await batches
            except BaseExceptionGroup as group:
                raise _leaf(group) from None
            complete = state.ckpt.complete
            state.tally.seconds += self.clock.run_seconds
            state.commit()
            if complete:
                state.finish()
        finally:
            chunks.close()
            state.close()
        report = BatchReport.build(state.tally, complete=complete, pending_requests=state.pending_requests,
                                   frontier_usd_per_post=self.policy.prices.est_frontier_usd_per_post,
                                   clock=self.clock, memory=self.memory, outputs=self.options.outputs)
        if complete:
            self.options.outputs.report.write_bytes(codec.dumps_pretty(report.to_json()))
            state.discard()
        return report


def _nothing() -> None:
    return None


def _leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error in a task group's exception group (a stage's own error, not the wrapper)."""
    first = group.exceptions[0]
    return _leaf(first) if isinstance(first, BaseExceptionGroup) else first
