"""A batch run's clock (wall time, and the classify throughput the report states) and its progress bar."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn


@dataclass
class RunClock:
    """This invocation's timing: from its start, and classification from the first chunk read to the last chunk
    committed (the engine's start is before that, so it is not in the throughput)."""

    started: float = field(default_factory=time.perf_counter)
    classified: int = 0
    classify_started: float | None = None
    classify_ended: float | None = None

    @property
    def classify_seconds(self) -> float:
        if self.classify_started is None:
            return 0.0
        return (self.classify_ended or time.perf_counter()) - self.classify_started

    @property
    def posts_per_s(self) -> float:
        seconds = self.classify_seconds
        return self.classified / seconds if seconds else 0.0

    @property
    def run_seconds(self) -> float:
        return time.perf_counter() - self.started


def progress_bar(console: Console, *, enabled: bool) -> Progress:
    """One bar for the input: its units done, posts read and the classify rate. Its task takes the fields
    ``posts`` and ``rate``."""
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    TextColumn("{task.fields[posts]:,} posts"), TextColumn("{task.fields[rate]:,.0f} posts/s"),
                    TimeRemainingColumn(), console=console, disable=not enabled, transient=False)
