"""The checkpoint of a batch run: what is done, what is pending, and how to resume without paying twice.

A run writes its outputs append-only and, after each step, records in ``checkpoint.json`` (atomically: temp
file, fsync, rename) the durable length (*mark*) of every output and where the input stands. Resuming
truncates every output to its mark and reads the input on from the cursor, so whatever was written after the
last checkpoint is discarded and done again: every input id ends in the outputs exactly once.

    cursor               where the input resumes (rows of a file, offsets of a topic)
    marks                sink name -> durable length (verdicts, dead letters, labels, unadjudicated, journals)
    chunks               chunks committed; tags the urgent-outcome journal of the chunk in progress
    deferred_*           the deferrable escalations: written to the journal / submitted in Message Batches
    submitting           set just before a Message Batch is created, cleared once its id is recorded: a run
                         killed in between finds the batch by its creation time and size instead of paying twice
    pending              Message Batches submitted and not merged yet (id, and the journal range they hold)
    tally                the report's counters, carried across resumes

``identity`` (input, policy version, model version, outputs) must match on resume: a different input or
policy would mix two runs in one output.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline import codec
from pipeline.dataset.files import atomic_write
from pipeline.errors import ConfigError

CHECKPOINT_FILE = "checkpoint.json"
FORMAT_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JournalRange(_Frozen):
    """Entries ``first`` (inclusive) to ``end`` (exclusive) of the deferred journal, at these byte offsets."""

    first: int
    end: int
    start_byte: int
    end_byte: int

    @property
    def size(self) -> int:
        return self.end - self.first


class Submitting(_Frozen):
    range: JournalRange
    at: datetime


class PendingBatch(_Frozen):
    id: str
    range: JournalRange
    submitted_at: datetime


class Checkpoint(_Frozen):
    version: int = FORMAT_VERSION
    identity: dict[str, Any]
    token: str
    """Random, per run: prefixes the custom ids of its Message Batches requests, so no other run's are taken."""
    cursor: dict[str, Any] | None = None
    input_done: bool = False
    chunks: int = 0
    marks: dict[str, int] = {}
    deferred_written: int = 0
    deferred_submitted: int = 0
    deferred_submitted_byte: int = 0
    submitting: Submitting | None = None
    pending: tuple[PendingBatch, ...] = ()
    merged: tuple[str, ...] = ()
    """Message Batches already merged (never adopted again by a recovering run)."""
    tally: dict[str, Any] = {}

    @property
    def unsubmitted(self) -> int:
        return self.deferred_written - self.deferred_submitted

    @property
    def complete(self) -> bool:
        return self.input_done and not self.unsubmitted and not self.pending and self.submitting is None


def save(state_dir: Path, checkpoint: Checkpoint) -> None:
    atomic_write(state_dir / CHECKPOINT_FILE, codec.dumps_pretty(checkpoint.model_dump(mode="json")))


def load(state_dir: Path) -> Checkpoint | None:
    path = state_dir / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        checkpoint = Checkpoint.model_validate(codec.loads(path.read_bytes()))
    except (ValidationError, ValueError) as exc:
        raise ConfigError(f"{path} is not a batch checkpoint this version can read ({exc}); delete {state_dir} "
                          "to start the run over") from exc
    if checkpoint.version != FORMAT_VERSION:
        raise ConfigError(f"{path} has format version {checkpoint.version}, this version writes {FORMAT_VERSION}: "
                          f"finish the run with the version that started it, or delete {state_dir} to start over")
    return checkpoint


def identity_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """What differs between the run the checkpoint belongs to and this one, as a sentence; None if nothing."""
    changed = [f"{key}: {saved.get(key)!r} then, {current.get(key)!r} now"
               for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]
    return "; ".join(changed) or None
