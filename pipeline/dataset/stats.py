"""`modcascade dataset stats`: what the dataset holds, and where the small model and the adjudicator disagree.

Pure over the de-duplicated view (:meth:`DatasetStore.current`), plus a rich renderer.

- Counts by label, by source and by day (UTC date of ``labelled_at``). A multi-label row counts once for each
  of its labels, so the label counts may add up to more than the rows.
- Disagreement, per category: of the single-label rows an adjudicator labelled (source ``frontier`` by default)
  that carry the small model's scores from the time, the share whose small-model label differs. The
  small-model label is the argmax of its scores over the safe class and the categories; scores without the
  safe class (a multi-label head) mean the best category when it reaches 0.5, else the safe class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from pipeline.dataset.store import row_labels
from pipeline.records import LabelSource

MULTI_LABEL_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class Disagreement:
    category: str
    """The adjudicator's label."""
    compared: int
    disagreed: int
    small_model_said: tuple[tuple[str, int], ...]
    """What the small model said instead, most frequent first (then by name)."""

    @property
    def rate(self) -> float:
        return self.disagreed / self.compared if self.compared else 0.0


@dataclass(frozen=True, slots=True)
class DatasetStats:
    rows: int
    by_label: tuple[tuple[str, int], ...]
    by_source: tuple[tuple[str, int], ...]
    by_day: tuple[tuple[str, int], ...]
    multi_label: int
    disagreement: tuple[Disagreement, ...]
    compared_sources: tuple[LabelSource, ...]

    @property
    def compared(self) -> int:
        return sum(d.compared for d in self.disagreement)

    @property
    def disagreement_rate(self) -> float:
        return sum(d.disagreed for d in self.disagreement) / self.compared if self.compared else 0.0


def small_model_label(scores: Mapping[str, float], safe: str) -> str | None:
    """The label the small model gave (see the module docstring); ``None`` without scores."""
    if not scores:
        return None
    if safe in scores:
        # Ties go to the safe class, then to the first name in order: the same answer on every run.
        return max(sorted(scores), key=lambda name: (scores[name], name == safe))
    best = max(sorted(scores), key=lambda name: scores[name])
    return best if scores[best] >= MULTI_LABEL_THRESHOLD else safe


def compute_stats(current: pa.Table, *, safe: str, adjudicators: Iterable[LabelSource] = ("frontier",)) -> DatasetStats:
    """Statistics of the de-duplicated view ``current`` (rows of :data:`pipeline.dataset.store.SCHEMA`)."""
    sources = tuple(adjudicators)
    by_label: Counter[str] = Counter()
    multi = 0
    said: dict[str, Counter[str]] = {}
    columns = ("label", "labels", "source", "model_scores")
    for row in current.select(list(columns)).to_pylist():
        names = row_labels(row)
        by_label.update(names)
        if len(names) != 1:
            multi += 1
            continue
        if row["source"] in sources and row["model_scores"]:
            guess = small_model_label(dict(row["model_scores"]), safe)
            assert guess is not None
            said.setdefault(names[0], Counter())[guess] += 1
    days = pc.strftime(current["labelled_at"], format="%Y-%m-%d").to_pylist() if current.num_rows else []
    disagreement = tuple(
        Disagreement(category, sum(counts.values()), sum(n for g, n in counts.items() if g != category),
                     tuple((g, n) for g, n in _ranked(counts) if g != category))
        for category, counts in sorted(said.items())
    )
    return DatasetStats(
        rows=current.num_rows,
        by_label=_ranked(by_label),
        by_source=_ranked(Counter(current["source"].to_pylist())),
        by_day=tuple(sorted(Counter(days).items())),
        multi_label=multi,
        disagreement=disagreement,
        compared_sources=sources,
    )


def render_stats(stats: DatasetStats, console: Console, *, where: str) -> None:
    if not stats.rows:
        console.print(f"0 labelled posts in {where}: the feedback worker has written nothing there yet")
        return
    console.print(f"[bold]{stats.rows:,}[/] labelled posts in {where} (one row per post, precedence applied)")
    for title, counts in (("label", stats.by_label), ("source", stats.by_source), ("day", stats.by_day)):
        table = Table(title=f"by {title}", title_justify="left")
        table.add_column(title)
        table.add_column("posts", justify="right")
        table.add_column("share", justify="right")
        for name, n in counts:
            table.add_row(name, f"{n:,}", f"{n / stats.rows:.1%}")
        console.print(table)
    if stats.multi_label:
        console.print(f"{stats.multi_label:,} multi-label rows (counted under each of their labels; not compared)")
    who = " / ".join(stats.compared_sources)
    if not stats.compared:
        console.print(f"no {who} labels with the small model's scores yet: no disagreement to report")
        return
    table = Table(title=f"small model vs adjudicator ({who}), by the adjudicator's label", title_justify="left")
    for column in ("category", "compared", "disagreed", "rate", "small model said instead"):
        table.add_column(column, justify="left" if column in ("category", "small model said instead") else "right")
    for d in stats.disagreement:
        instead = ", ".join(f"{g} {n:,}" for g, n in d.small_model_said[:3])
        table.add_row(d.category, f"{d.compared:,}", f"{d.disagreed:,}", f"{d.rate:.1%}", instead)
    table.add_row("[bold]all[/]", f"{stats.compared:,}", f"{sum(d.disagreed for d in stats.disagreement):,}",
                  f"{stats.disagreement_rate:.1%}", "")
    console.print(table)


def _ranked(counts: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
