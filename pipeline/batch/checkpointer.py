"""A batch run's durable state, kept in step: the outputs, the deferred journal, the tally and the checkpoint
(:mod:`pipeline.batch.checkpoint`).

    state = Checkpointer(outputs, identity, overwrite=False)
    state.open()                     # resume the run the checkpoint belongs to, or start one
    state.write(records)             # appended to the verdicts, dead letters, labels or unadjudicated file
    state.deferred.append(...)       # deferrable escalations, for Message Batches
    state.commit(cursor=...)         # every output durable, then their marks and the updates in the checkpoint
    ...
    state.finish()                   # a complete run: outputs finished, empty side files removed
    state.close()

``commit`` is synchronous on purpose: no other task runs between the appends before it and the checkpoint, so
the marks and the cursor always agree. Resuming truncates every output to its mark, so what was written after the
last checkpoint is done again and every input id ends in the outputs exactly once.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from collections.abc import Sequence
from typing import Any

from pipeline.batch.checkpoint import Checkpoint, identity_mismatch, load, save
from pipeline.batch.journal import Journal
from pipeline.batch.options import Outputs
from pipeline.batch.report import Tally
from pipeline.batch.sinks import RecordSink, open_sink
from pipeline.errors import ConfigError
from pipeline.records import AdjudicationRequest, DeadLetter, Label, Record, Verdict

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, outputs: Outputs, identity: dict[str, Any], *, overwrite: bool = False) -> None:
        self.out = outputs
        self.identity = identity
        self.overwrite = overwrite
        self.resumed = False
        """Whether :meth:`open` found a checkpoint of this run (else it started one)."""
        self.ckpt: Checkpoint
        self.tally: Tally
        self.sinks: dict[str, RecordSink] = {}
        self.deferred: Journal
        """The deferrable escalations waiting for (or in) a Message Batch."""

    def open(self) -> None:
        """Resume from the checkpoint in the state directory (it must be this run's), else start a run (refusing
        to replace outputs of another one unless ``overwrite``); then checkpoint."""
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
            if existing and not self.overwrite:
                raise ConfigError(f"{', '.join(existing)} already exist and no checkpoint of an unfinished run is in "
                                  f"{self.out.state}: pass --overwrite to replace them, or choose another --out")
            self.ckpt = Checkpoint(identity=self.identity, token=secrets.token_hex(4))
        self.resumed = saved is not None
        marks = self.ckpt.marks
        for name, path in self.out.files().items():
            self.sinks[name] = open_sink(path, resume_mark=marks.get(name, 0) if self.resumed else None)
        self.deferred = Journal(self.out.state / "deferred.jsonl",
                                resume_mark=marks.get("deferred", 0) if self.resumed else None)
        self.tally = Tally.from_json(self.ckpt.tally)
        self.commit()

    def commit(self, **updates: Any) -> None:
        """Make every output durable and record the checkpoint, with ``updates`` to its fields."""
        marks = {name: sink.mark() for name, sink in self.sinks.items()}
        marks["deferred"] = self.deferred.mark()
        self.ckpt = self.ckpt.model_copy(update={**updates, "marks": marks, "tally": self.tally.to_json()})
        save(self.out.state, self.ckpt)

    def write(self, records: Sequence[Record]) -> None:
        """Append each record to its output (escalations not adjudicated to the unadjudicated file) and count it."""
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

    @property
    def pending_requests(self) -> int:
        """Deferrable escalations in Message Batches, or written and not submitted yet."""
        return sum(b.range.size for b in self.ckpt.pending) + self.ckpt.unsubmitted

    def finish(self) -> None:
        """The run is complete: finish the outputs and remove empty side files (no labels, nothing unadjudicated)."""
        for sink in self.sinks.values():
            sink.finish()
        for name, path in self.out.files().items():
            if name != "verdicts" and path.exists() and not path.stat().st_size:
                path.unlink()

    def close(self) -> None:
        for sink in self.sinks.values():
            sink.close()
        self.deferred.close()

    def discard(self) -> None:
        """Remove the state directory (the run is complete and its report written)."""
        shutil.rmtree(self.out.state)
