"""The deferrable escalations' way through Anthropic's Message Batches (half price): submitted from the deferred
journal in batches of up to ``message_batch_max``, polled, and merged into the outputs when they end. What each
result becomes is :func:`pipeline.batch.deferred.settle`'s (pure); this module keeps the lifecycle durable:

- a Message Batch is recorded before and after it is created (``Checkpoint.submitting``): a run killed in between
  adopts the batch it created (found by creation time and size) instead of paying twice;
- a batch's results, the requests to submit again and the batch leaving ``pending`` are committed in one step;
- requests carry custom ids prefixed with the run's token, so no other run's results are taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from pipeline.adjudication.message_batches import BatchItem, MessageBatches
from pipeline.adjudication.prompt import build_request
from pipeline.adjudication.stage import book_usage
from pipeline.batch.checkpoint import JournalRange, PendingBatch, Submitting
from pipeline.batch.checkpointer import Checkpointer
from pipeline.batch.deferred import DeferredEntry, settle
from pipeline.batch.options import BatchOptions
from pipeline.errors import FrontierTransient
from pipeline.metrics import Metrics
from pipeline.policy import Policy
from pipeline.records import Record
from pipeline.retry import Backoff

log = logging.getLogger(__name__)

SUBMISSION_CLOCK_SKEW = timedelta(minutes=10)
"""How far back a recovering run looks for a Message Batch it may have created just before it was killed."""


class DeferredBatches:
    def __init__(self, batches: MessageBatches, state: Checkpointer, policy: Policy, options: BatchOptions, *,
                 metrics: Metrics, backoff: Backoff, clock: Callable[[], datetime]) -> None:
        self.batches = batches
        self.state = state
        self.policy = policy
        self.options = options
        self.metrics = metrics
        self.backoff = backoff
        self.now = clock
        self._work = asyncio.Event()  # deferred requests were added, or the input ended

    def wake(self) -> None:
        """There is something new to submit, or the input ended."""
        self._work.set()

    async def run(self) -> None:
        """Submit, poll and merge until nothing is left (or, without ``wait``, until everything is submitted).
        Errors of the Message Batches API that may pass are retried with backoff."""
        failures = 0
        while True:
            try:
                await self._step()
                failures = 0
            except FrontierTransient as exc:
                delay = self.backoff.delay(failures)
                failures += 1
                log.warning("Message Batches API: %s; trying again in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            c = self.state.ckpt
            if c.input_done and not c.unsubmitted and c.submitting is None and (not c.pending or not self.options.wait):
                return
            self._work.clear()
            if not c.pending and not c.input_done and c.unsubmitted < self.options.message_batch_max:
                await self._work.wait()  # nothing to poll: wait for requests to submit
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._work.wait(), self.options.poll_interval_s)

    async def _step(self) -> None:
        c = self.state
        if c.ckpt.submitting is not None:
            await self._recover_submission(c.ckpt.submitting)
        while c.ckpt.unsubmitted >= self.options.message_batch_max or (c.ckpt.input_done and c.ckpt.unsubmitted > 0):
            await self._submit(min(c.ckpt.unsubmitted, self.options.message_batch_max))
        for pending in list(c.ckpt.pending):
            if (await self.batches.state(pending.id)).ended:
                await self._merge(pending)

    def _custom_id(self, index: int) -> str:
        return f"{self.state.ckpt.token}-{index}"

    async def _submit(self, count: int) -> None:
        c = self.state.ckpt
        entries: list[DeferredEntry] = []
        end_byte = c.deferred_submitted_byte
        for offset, entry in self.state.deferred.read(c.deferred_submitted_byte):
            entries.append(DeferredEntry.from_json(entry))
            end_byte = offset
            if len(entries) == count:
                break
        span = JournalRange(first=c.deferred_submitted, end=c.deferred_submitted + len(entries),
                            start_byte=c.deferred_submitted_byte, end_byte=end_byte)
        self.state.commit(submitting=Submitting(range=span, at=self.now()))
        items = [(self._custom_id(span.first + i), build_request(entry.request, self.policy))
                 for i, entry in enumerate(entries)]
        state = await self.batches.submit(items)
        log.info("submitted Message Batch %s with %d deferrable escalations", state.id, len(items))
        self._recorded(PendingBatch(id=state.id, range=span, submitted_at=self.now()))

    def _recorded(self, batch: PendingBatch) -> None:
        self.state.tally.message_batches += 1
        self.state.commit(submitting=None, pending=(*self.state.ckpt.pending, batch),
                          deferred_submitted=batch.range.end, deferred_submitted_byte=batch.range.end_byte)

    async def _recover_submission(self, intent: Submitting) -> None:
        """A run stopped between creating a Message Batch and recording it: adopt the batch if the API has it
        (created since the intent, same size, not one of ours already), else submit again."""
        known = {batch.id for batch in self.state.ckpt.pending} | set(self.state.ckpt.merged)
        candidates = [state for state in await self.batches.created_since(intent.at - SUBMISSION_CLOCK_SKEW)
                      if state.requests == intent.range.size and state.id not in known]
        if candidates:
            adopted = min(candidates, key=lambda state: state.created_at)
            log.warning("adopting Message Batch %s, created before the last run was stopped", adopted.id)
            self._recorded(PendingBatch(id=adopted.id, range=intent.range, submitted_at=adopted.created_at))
        else:
            self.state.commit(submitting=None)

    async def _merge(self, pending: PendingBatch) -> None:
        span = pending.range
        entries = {self._custom_id(span.first + i): DeferredEntry.from_json(entry)
                   for i, (_, entry) in enumerate(self.state.deferred.read(span.start_byte, span.end_byte))}
        items: dict[str, BatchItem] = {}
        async for result in self.batches.results(pending.id):
            if result.custom_id in entries:  # anything else is not ours: ignore it
                items[result.custom_id] = result
        now = self.now()
        records: list[Record] = []
        retries: list[DeferredEntry] = []
        for custom_id, entry in entries.items():
            item = items.get(custom_id)
            outcome = settle(item, entry, self.policy, max_attempts=self.options.max_deferred_attempts, now=now)
            if item is not None and item.reply is not None:
                book_usage(self.metrics, item.reply)
                self.metrics.frontier_cost_usd.inc(outcome.cost)
            records.extend(outcome.records)
            if outcome.retry is not None:
                retries.append(outcome.retry)
        # One synchronous step: outputs, resubmissions and the batch leaving ``pending`` are recorded together.
        c = self.state
        c.write(records)
        c.deferred.append(entry.to_json() for entry in retries)
        c.tally.resubmitted += len(retries)
        c.commit(pending=tuple(b for b in c.ckpt.pending if b.id != pending.id), merged=(*c.ckpt.merged, pending.id),
                 deferred_written=c.ckpt.deferred_written + len(retries))
        log.info("merged Message Batch %s: %d settled, %d to submit again", pending.id, len(entries) - len(retries),
                 len(retries))
