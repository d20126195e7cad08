"""The batch run: the stream's cascade over a file or a topic range, resumable, with deferred escalations.

    read a chunk ─► ClassifyStage (the stream's intake, cache, classify, decide, route) ─► settle, commit
                        │ classifies the next chunk while this one's urgent escalations are adjudicated
    urgent escalations  ─► AdjudicationStage (the stream's: budget, breaker, retries, fallback), at once
    deferrable ones     ─► the deferred journal ─► Message Batches (half price) ─► polled ─► merged
    no frontier model   ─► the unadjudicated file (AdjudicationRequest records, as on the adjudication topic)

Nothing here decides anything: the stream's stages do, so a post gets the same decision either way. This
module only moves records between files, stages and the Message Batches API, and keeps the checkpoint
(:mod:`pipeline.batch.checkpoint`) so a run stopped at any point (SIGKILL included) resumes without losing a
post, writing one twice, or paying again for what was adjudicated:

- a chunk's outputs and the input cursor move together in one checkpoint;
- an urgent escalation's outcome is journaled as soon as it is known, so a chunk redone after a kill reuses it
  (at most the calls in flight at the moment of the kill are paid twice: the API bills them either way);
- a Message Batch is recorded before and after it is created (see ``submitting``), and merged in one step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from pipeline import codec
from pipeline.adjudication.message_batches import BatchItem, MessageBatches
from pipeline.adjudication.prompt import build_request
from pipeline.adjudication.stage import AdjudicationStage, book_usage
from pipeline.batch.checkpoint import Checkpoint, JournalRange, PendingBatch, Submitting, identity_mismatch, load, save
from pipeline.batch.deferred import DeferredEntry, settle
from pipeline.batch.io import PostSource, RecordSink, open_sink
from pipeline.batch.journal import Journal
from pipeline.batch.report import BatchReport, Tally
from pipeline.cascade.stage import ClassifyStage
from pipeline.errors import ConfigError, FrontierTransient
from pipeline.intake import RawRecord
from pipeline.metrics import Metrics
from pipeline.policy import Policy
from pipeline.records import AdjudicationRequest, DeadLetter, Label, Record, Verdict, utcnow
from pipeline.retry import Backoff
from pipeline.stage import Outgoing

log = logging.getLogger(__name__)

SUBMISSION_CLOCK_SKEW = timedelta(minutes=10)
"""How far back a recovering run looks for a Message Batch it may have created just before it was killed."""
_RECORD_TYPES: dict[str, type[Record]] = {"Verdict": Verdict, "Label": Label, "DeadLetter": DeadLetter}


@dataclass(frozen=True, slots=True)
class Outputs:
    """Where a run writes. Side files sit next to the verdicts: ``out.jsonl`` → ``out.dead-letters.jsonl``,
    ``out.labels.jsonl`` (frontier labels, for the retraining dataset), ``out.unadjudicated.jsonl``."""

    verdicts: Path
    dead_letters: Path
    labels: Path
    unadjudicated: Path
    state: Path

    @classmethod
    def beside(cls, out: Path, *, dead_letters: Path | None = None, state: Path | None = None) -> Outputs:
        stem = out.with_suffix("")
        return cls(verdicts=out, dead_letters=dead_letters or stem.with_name(stem.name + ".dead-letters.jsonl"),
                   labels=stem.with_name(stem.name + ".labels.jsonl"),
                   unadjudicated=stem.with_name(stem.name + ".unadjudicated.jsonl"),
                   state=state or out.with_name(out.name + ".state"))

    def files(self) -> dict[str, Path]:
        return {"verdicts": self.verdicts, "dead_letters": self.dead_letters, "labels": self.labels,
                "unadjudicated": self.unadjudicated}

    @property
    def report(self) -> Path:
        return self.verdicts.with_name(self.verdicts.with_suffix("").name + ".report.json")


@dataclass(frozen=True, slots=True)
class BatchOptions:
    outputs: Outputs
    chunk_posts: int = 2048
    message_batch_max: int = 10_000
    poll_interval_s: float = 60.0
    max_deferred_attempts: int = 3
    wait: bool = True
    """Wait for pending Message Batches; else stop once everything is submitted (run again to collect)."""
    overwrite: bool = False
    progress: bool = True


@dataclass
class _Clock:
    started: float = field(default_factory=time.perf_counter)
    classified: int = 0
    classify_started: float | None = None
    classify_ended: float | None = None

    @property
    def classify_seconds(self) -> float:
        if self.classify_started is None:
            return 0.0
        return (self.classify_ended or time.perf_counter()) - self.classify_started


class PeakRss:
    """The peak resident memory of this process and its children (the vLLM engine core is one), sampled."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.peak = 0

    def take(self) -> None:
        process = psutil.Process()
        total = 0
        for proc in (process, *process.children(recursive=True)):
            try:
                total += proc.memory_info().rss
            except psutil.Error:  # exited while we looked
                continue
        self.peak = max(self.peak, total)

    async def sample(self) -> None:
        """Sample until cancelled."""
        while True:
            self.take()
            await asyncio.sleep(self.interval_s)


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
        clock: Callable[[], Any] = utcnow,
        memory: PeakRss | None = None,
    ) -> None:
        self.source = source
        self.policy = policy
        self.classify = classify
        self.adjudicate = adjudicate
        self.batches = batches if adjudicate is not None else None
        self.options = options
        self.identity = identity
        self.metrics = metrics
        self.console = console
        self.backoff = backoff or Backoff(base_s=1.0, max_s=60.0)
        self.now = clock
        self.out = options.outputs
        self._work = asyncio.Event()  # a chunk added deferred requests, or the input ended
        self._clock = _Clock()
        self.memory = memory or PeakRss()
        self.ckpt: Checkpoint
        self.tally: Tally
        self.sinks: dict[str, RecordSink] = {}
        self.deferred: Journal
        self.urgent: Journal
        self._reuse: dict[str, list[Record]] = {}

    # -- the run -------------------------------------------------------------------------------------

    async def run(self) -> BatchReport:
        self._open()
        try:
            try:
                async with asyncio.TaskGroup() as tasks:
                    sampler = tasks.create_task(self.memory.sample())
                    deferred = tasks.create_task(self._deferred_loop()) if self.batches is not None else None
                    if not self.ckpt.input_done:
                        await self._classify_input()
                        self._commit(input_done=True)
                        self._work.set()
                    if deferred is not None:
                        await deferred
                    sampler.cancel()
            except BaseExceptionGroup as group:
                raise _leaf(group) from None
            complete = self.ckpt.complete
            self.tally.seconds += time.perf_counter() - self._clock.started
            self._commit()
            if complete:
                for sink in self.sinks.values():
                    sink.finish()
                for name, path in self.out.files().items():  # no empty side files (no labels, nothing unadjudicated)
                    if name != "verdicts" and path.exists() and not path.stat().st_size:
                        path.unlink()
        finally:
            self._close()
        report = self._report(complete)
        if complete:
            self.out.report.write_bytes(codec.dumps_pretty(report.to_json()))
            shutil.rmtree(self.out.state)
        return report

    def _open(self) -> None:
        saved = load(self.out.state)
        if saved is not None:
            if problem := identity_mismatch(saved.identity, self.identity):
                raise ConfigError(f"the checkpoint in {self.out.state} belongs to another run ({problem}): resume with "
                                  f"the same input, policy and model, or delete {self.out.state} to start over")
            self.ckpt = saved
            log.info("resuming the batch run in %s: %d chunks done, %d Message Batches pending", self.out.state,
                     saved.chunks, len(saved.pending))
        else:
            existing = [str(p) for p in self.out.files().values() if p.exists()]
            if existing and not self.options.overwrite:
                raise ConfigError(f"{', '.join(existing)} already exist and no checkpoint of an unfinished run is in "
                                  f"{self.out.state}: pass --overwrite to replace them, or choose another --out")
            self.ckpt = Checkpoint(identity=self.identity, token=secrets.token_hex(4))
        resume = saved is not None
        marks = self.ckpt.marks
        for name, path in self.out.files().items():
            self.sinks[name] = open_sink(path, resume_mark=marks.get(name, 0) if resume else None)
        self.deferred = Journal(self.out.state / "deferred.jsonl", resume_mark=marks.get("deferred", 0) if resume
                                else None)
        urgent = self.out.state / "urgent.jsonl"
        self.urgent = Journal(urgent, resume_mark=urgent.stat().st_size if resume and urgent.exists() else None)
        for _, entry in self.urgent.read():  # outcomes already paid for in the chunk the kill interrupted
            if entry["chunk"] == self.ckpt.chunks:
                self._reuse[entry["post_id"]] = [_RECORD_TYPES[r["type"]].model_validate(r["record"])
                                                 for r in entry["records"]]
        self.urgent.reset()
        self.tally = Tally.from_json(self.ckpt.tally)
        self._commit()

    def _close(self) -> None:
        for sink in self.sinks.values():
            sink.close()
        self.deferred.close()
        self.urgent.close()

    def _commit(self, **updates: Any) -> None:
        """Make every output durable and record the checkpoint. Synchronous on purpose: no other task runs
        between the appends before it and the checkpoint, so the marks and the cursor always agree."""
        marks = {name: sink.mark() for name, sink in self.sinks.items()}
        marks["deferred"] = self.deferred.mark()
        self.ckpt = self.ckpt.model_copy(update={**updates, "marks": marks, "tally": self.tally.to_json()})
        save(self.out.state, self.ckpt)

    def _write(self, records: Sequence[Record]) -> None:
        for record in records:
            if isinstance(record, Verdict):
                self.sinks["verdicts"].append([record])
            elif isinstance(record, DeadLetter):
                self.sinks["dead_letters"].append([record])
            elif isinstance(record, Label):
                self.sinks["labels"].append([record])
            elif isinstance(record, AdjudicationRequest):
                self.sinks["unadjudicated"].append([record])
        self.tally.count(records)

    # -- classification ------------------------------------------------------------------------------

    async def _classify_input(self) -> None:
        queue: asyncio.Queue[tuple[Any, list[Outgoing]] | None] = asyncio.Queue(maxsize=1)

        async def classify_chunks() -> None:
            async for chunk in self.source.chunks(self.options.chunk_posts, self.ckpt.cursor):
                if self._clock.classify_started is None:
                    self._clock.classify_started = time.perf_counter()
                outputs = await self.classify.process(chunk.records, asyncio.sleep)
                await queue.put((chunk, list(outputs)))
            await queue.put(None)

        with self._progress() as progress:
            task = progress.add_task(self.source.description, total=self.source.total_units, posts=0, rate=0.0)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(classify_chunks())
                while (item := await queue.get()) is not None:
                    chunk, outputs = item
                    await self._settle_chunk(chunk, outputs)
                    self._clock.classified += len(chunk.records)
                    seconds = self._clock.classify_seconds
                    progress.update(task, total=self.source.total_units, completed=chunk.done_units,
                                    posts=self.tally.posts, rate=self._clock.classified / seconds if seconds else 0.0)
        self._clock.classify_ended = time.perf_counter()

    async def _settle_chunk(self, chunk: Any, outputs: list[Outgoing]) -> None:
        settled: list[Record] = []
        urgent: list[AdjudicationRequest] = []
        deferred: list[AdjudicationRequest] = []
        for out in outputs:
            record = out.record
            if isinstance(record, AdjudicationRequest):
                if self.batches is not None and record.tier == "deferrable":
                    deferred.append(record)
                elif self.adjudicate is not None:
                    urgent.append(record)
                else:
                    settled.append(record)
                    self.tally.escalated["unadjudicated"] += 1
            elif isinstance(record, (Verdict, DeadLetter)):
                settled.append(record)
        for records in await asyncio.gather(*(self._adjudicate_now(request) for request in urgent)):
            settled.extend(records)
        # From here to the checkpoint nothing awaits: outputs, cursor and journal move together.
        self._write(settled)
        self.deferred.append(DeferredEntry(request).to_json() for request in deferred)
        self.tally.posts += len(chunk.records)
        self.tally.escalated["urgent"] += len(urgent)
        self.tally.escalated["deferred"] += len(deferred)
        self._commit(cursor=chunk.cursor, chunks=self.ckpt.chunks + 1,
                     deferred_written=self.ckpt.deferred_written + len(deferred))
        self.urgent.reset()
        self._reuse.clear()
        if deferred:
            self._work.set()

    async def _adjudicate_now(self, request: AdjudicationRequest) -> list[Record]:
        if (known := self._reuse.get(request.post.id)) is not None:
            return known
        assert self.adjudicate is not None
        raw = RawRecord(codec.encode(request), key=request.post.id.encode())
        outputs = await self.adjudicate.process([raw], asyncio.sleep)
        records = [out.record for out in outputs]
        self.urgent.append([{"chunk": self.ckpt.chunks, "post_id": request.post.id,
                             "records": [{"type": type(r).__name__, "record": r.model_dump(mode="json")}
                                         for r in records]}], flush=True)
        return records

    # -- Message Batches -----------------------------------------------------------------------------

    async def _deferred_loop(self) -> None:
        failures = 0
        while True:
            try:
                await self._deferred_step()
                failures = 0
            except FrontierTransient as exc:
                delay = self.backoff.delay(failures)
                failures += 1
                log.warning("Message Batches API: %s; trying again in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            c = self.ckpt
            if c.input_done and not c.unsubmitted and c.submitting is None and (not c.pending or not self.options.wait):
                return
            self._work.clear()
            if not c.pending and not c.input_done and c.unsubmitted < self.options.message_batch_max:
                await self._work.wait()  # nothing to poll: wait for requests to submit
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._work.wait(), self.options.poll_interval_s)

    async def _deferred_step(self) -> None:
        if self.ckpt.submitting is not None:
            await self._recover_submission(self.ckpt.submitting)
        while self.ckpt.unsubmitted >= self.options.message_batch_max or (self.ckpt.input_done
                                                                          and self.ckpt.unsubmitted > 0):
            await self._submit(min(self.ckpt.unsubmitted, self.options.message_batch_max))
        assert self.batches is not None
        for pending in list(self.ckpt.pending):
            state = await self.batches.state(pending.id)
            if state.ended:
                await self._merge(pending)

    def _custom_id(self, index: int) -> str:
        return f"{self.ckpt.token}-{index}"

    async def _submit(self, count: int) -> None:
        assert self.batches is not None
        c = self.ckpt
        entries: list[DeferredEntry] = []
        end_byte = c.deferred_submitted_byte
        for offset, entry in self.deferred.read(c.deferred_submitted_byte):
            entries.append(DeferredEntry.from_json(entry))
            end_byte = offset
            if len(entries) == count:
                break
        span = JournalRange(first=c.deferred_submitted, end=c.deferred_submitted + len(entries),
                            start_byte=c.deferred_submitted_byte, end_byte=end_byte)
        self._commit(submitting=Submitting(range=span, at=self.now()))
        items = [(self._custom_id(span.first + i), build_request(entry.request, self.policy))
                 for i, entry in enumerate(entries)]
        state = await self.batches.submit(items)
        log.info("submitted Message Batch %s with %d deferrable escalations", state.id, len(items))
        self._recorded(PendingBatch(id=state.id, range=span, submitted_at=self.now()))

    def _recorded(self, batch: PendingBatch) -> None:
        self.tally.message_batches += 1
        self._commit(submitting=None, pending=(*self.ckpt.pending, batch), deferred_submitted=batch.range.end,
                     deferred_submitted_byte=batch.range.end_byte)

    async def _recover_submission(self, intent: Submitting) -> None:
        """A run stopped between creating a Message Batch and recording it: adopt the batch if the API has it
        (created since the intent, same size, not one of ours already), else submit again."""
        assert self.batches is not None
        known = {batch.id for batch in self.ckpt.pending} | set(self.ckpt.merged)
        candidates = [state for state in await self.batches.created_since(intent.at - SUBMISSION_CLOCK_SKEW)
                      if state.requests == intent.range.size and state.id not in known]
        if candidates:
            adopted = min(candidates, key=lambda state: state.created_at)
            log.warning("adopting Message Batch %s, created before the last run was stopped", adopted.id)
            self._recorded(PendingBatch(id=adopted.id, range=intent.range, submitted_at=adopted.created_at))
        else:
            self._commit(submitting=None)

    async def _merge(self, pending: PendingBatch) -> None:
        assert self.batches is not None
        span = pending.range
        entries = {self._custom_id(span.first + i): DeferredEntry.from_json(entry)
                   for i, (_, entry) in enumerate(self.deferred.read(span.start_byte, span.end_byte))}
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
        self._write(records)
        self.deferred.append(entry.to_json() for entry in retries)
        self.tally.resubmitted += len(retries)
        self._commit(pending=tuple(b for b in self.ckpt.pending if b.id != pending.id),
                     merged=(*self.ckpt.merged, pending.id), deferred_written=self.ckpt.deferred_written + len(retries))
        log.info("merged Message Batch %s: %d settled, %d to submit again", pending.id, len(entries) - len(retries),
                 len(retries))

    # -- reporting -----------------------------------------------------------------------------------

    def _progress(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                        TextColumn("{task.fields[posts]:,} posts"), TextColumn("{task.fields[rate]:,.0f} posts/s"),
                        TimeRemainingColumn(), console=self.console, disable=not self.options.progress,
                        transient=False)

    def _report(self, complete: bool) -> BatchReport:
        files = {name: str(path) for name, path in self.out.files().items() if path.exists()}
        if complete:
            files["report"] = str(self.out.report)
        else:
            files["checkpoint"] = str(self.out.state)
        return BatchReport(
            tally=self.tally, complete=complete,
            pending_requests=sum(b.range.size for b in self.ckpt.pending) + self.ckpt.unsubmitted,
            all_frontier_usd=(self.tally.posts - self.tally.dead_letters)
            * self.policy.prices.est_frontier_usd_per_post,
            run_seconds=time.perf_counter() - self._clock.started, classified=self._clock.classified,
            classify_seconds=self._clock.classify_seconds, peak_rss_bytes=self.memory.peak, outputs=files,
        )



def _leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error in a task group's exception group (a stage's own error, not the wrapper)."""
    first = group.exceptions[0]
    return _leaf(first) if isinstance(first, BaseExceptionGroup) else first
