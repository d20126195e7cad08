"""What a batch run is given: where it writes (:class:`Outputs`) and how it runs (:class:`BatchOptions`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
