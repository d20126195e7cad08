"""The batch run's accounting and its closing report: counts by decision and route, escalations, cost against
sending everything to the frontier, time and throughput.

:class:`Tally` is updated as records are committed and saved in the checkpoint, so a resumed run reports the
whole run, not only its last part. Costs are real where the usage is known: a frontier verdict's cost is
priced from the usage of every call made for it; the small model's is the policy's price per post.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline.batch.memory import PeakMemory
from pipeline.batch.options import Outputs
from pipeline.batch.progress import RunClock
from pipeline.records import DeadLetter, Record, Verdict


@dataclass
class Tally:
    posts: int = 0
    """Input records read (valid posts and dead letters)."""
    dead_letters: int = 0
    by_route: Counter[str] = field(default_factory=Counter)
    by_decision: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    escalated: Counter[str] = field(default_factory=Counter)
    """Escalations by path: urgent (adjudicated at once), deferred (Message Batches), unadjudicated."""
    resubmitted: int = 0
    message_batches: int = 0
    small_model_usd: float = 0.0
    frontier_usd: float = 0.0
    seconds: float = 0.0
    """Wall time of every invocation of the run, summed."""

    def count(self, records: Iterable[Record]) -> None:
        for record in records:
            if isinstance(record, Verdict):
                self.by_route[record.route] += 1
                self.by_decision[record.decision] += 1
                self.flags.update(record.flags)
                if record.route in ("slm", "cache"):
                    self.small_model_usd += record.cost_usd
                else:
                    self.frontier_usd += record.cost_usd
            elif isinstance(record, DeadLetter):
                self.dead_letters += 1

    @property
    def verdicts(self) -> int:
        return sum(self.by_route.values())

    @property
    def escalations(self) -> int:
        return sum(self.escalated.values())

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it rebuilds a Counter from its items, counting the pairs.
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: dict(v) if isinstance(v, Counter) else v for k, v in values.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tally:
        tally = cls()
        for key, value in data.items():
            current = getattr(tally, key)
            setattr(tally, key, Counter(value) if isinstance(current, Counter) else value)
        return tally


@dataclass(frozen=True)
class BatchReport:
    tally: Tally
    complete: bool
    pending_requests: int
    """Deferrable escalations still in (or waiting for) Message Batches."""
    all_frontier_usd: float
    """What the same posts would have cost sent to the frontier one by one (the policy's estimate)."""
    run_seconds: float
    """This invocation's wall time."""
    classified: int
    classify_seconds: float
    peak_rss_bytes: int | None
    """None: not measured (no instrument was given to the run)."""
    outputs: Mapping[str, str]
    peak_rss_scope: str | None = None
    """What ``peak_rss_bytes`` covers (which processes)."""

    @classmethod
    def build(cls, tally: Tally, *, complete: bool, pending_requests: int, frontier_usd_per_post: float,
              clock: RunClock, memory: PeakMemory | None, outputs: Outputs) -> BatchReport:
        """The report of this invocation: ``outputs`` that exist, and the report file (complete) or the
        checkpoint to resume from (not complete)."""
        files = {name: str(path) for name, path in outputs.files().items() if path.exists()}
        if complete:
            files["report"] = str(outputs.report)
        else:
            files["checkpoint"] = str(outputs.state)
        return cls(tally=tally, complete=complete, pending_requests=pending_requests,
                   all_frontier_usd=(tally.posts - tally.dead_letters) * frontier_usd_per_post,
                   run_seconds=clock.run_seconds, classified=clock.classified,
                   classify_seconds=clock.classify_seconds,
                   peak_rss_bytes=memory.peak_bytes() if memory is not None else None,
                   peak_rss_scope=memory.scope if memory is not None else None, outputs=files)

    @property
    def posts_per_s(self) -> float:
        return self.classified / self.classify_seconds if self.classify_seconds > 0 else 0.0

    @property
    def escalation_rate(self) -> float:
        decided = self.tally.posts - self.tally.dead_letters
        return self.tally.escalations / decided if decided else 0.0

    @property
    def total_usd(self) -> float:
        return self.tally.small_model_usd + self.tally.frontier_usd

    def to_json(self) -> dict[str, Any]:
        return {
            "complete": self.complete, "tally": self.tally.to_json(), "verdicts": self.tally.verdicts,
            "pending_requests": self.pending_requests, "escalation_rate": self.escalation_rate,
            "cost_usd": {"small_model": self.tally.small_model_usd, "frontier": self.tally.frontier_usd,
                         "total": self.total_usd, "all_frontier_estimate": self.all_frontier_usd},
            "run_seconds": self.run_seconds, "total_seconds": self.tally.seconds, "classified": self.classified,
            "classify_seconds": self.classify_seconds,
            "posts_per_s": self.posts_per_s, "peak_rss_bytes": self.peak_rss_bytes,
            "peak_rss_scope": self.peak_rss_scope, "outputs": dict(self.outputs),
        }

    def render(self, console: Console) -> None:
        t = self.tally
        table = Table(title="batch run" + ("" if self.complete else " (not complete)"), show_header=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("posts read", f"{t.posts:,} ({t.dead_letters:,} dead letters)")
        table.add_row("final verdicts", f"{t.verdicts:,}: " + _counts(t.by_decision))
        table.add_row("by route", _counts(t.by_route))
        table.add_row("escalated", f"{t.escalations:,} ({self.escalation_rate:.1%}): " + _counts(t.escalated))
        if t.message_batches:
            table.add_row("Message Batches", f"{t.message_batches} submitted, {t.resubmitted:,} requests resubmitted")
        if self.pending_requests:
            table.add_row("pending", f"{self.pending_requests:,} escalations in Message Batches: run the same command "
                          "again to collect them")
        if t.flags:
            table.add_row("fallback flags", _counts(t.flags))
        saving = 1 - self.total_usd / self.all_frontier_usd if self.all_frontier_usd else 0.0
        unpaid = t.escalated["unadjudicated"] + self.pending_requests
        caveat = f"; {unpaid:,} escalations not adjudicated yet, not in the cost" if unpaid else ""
        table.add_row("cost", f"${self.total_usd:.4f} (small model ${t.small_model_usd:.4f}, frontier "
                      f"${t.frontier_usd:.4f}) vs ${self.all_frontier_usd:.2f} all-frontier ({saving:.1%} saved"
                      f"{caveat})")
        table.add_row("time", f"{self.run_seconds:.1f} s this run, {t.seconds:.1f} s in all (engine start excluded)")
        table.add_row("throughput", f"{self.posts_per_s:,.0f} posts/s ({self.classified:,} posts classified in "
                      f"{self.classify_seconds:.1f} s)")
        table.add_row("peak memory", "not measured" if self.peak_rss_bytes is None else
                      f"{self.peak_rss_bytes / 2**20:,.0f} MiB RSS ({self.peak_rss_scope or 'scope not stated'})")
        for name, path in self.outputs.items():
            table.add_row(name, path)
        console.print(table)


def _counts(counter: Mapping[str, int]) -> str:
    shown = sorted(((key, value) for key, value in counter.items() if value), key=lambda kv: -kv[1])
    return ", ".join(f"{key} {value:,}" for key, value in shown) or "none"
