"""`modcascade dataset stats`: what the dataset holds, and where the small model and the adjudicator disagree.

Pure over the de-duplicated view (:meth:`DatasetStore.current`), plus a rich renderer.

- Counts by label, by source and by day (UTC date of ``labelled_at``). A multi-label row counts once for each
  of its labels, so the label counts may add up to more than the rows.
- Disagreement, per category: of the single-label rows an adjudicator labelled (source ``frontier`` by default)
  that carry the small model's scores from the time, the share whose small-model label differs. The
  small-model label is the argmax of its scores over the safe class and the categories; scores without the
  safe class (a multi-label head) mean the best category when it reaches 0.5, else the safe class.
- Live precision, per category of the audited verdicts (from all rows, :func:`live_precision`): of the final
  small-model verdicts drawn into the audit sample, the share whose category (the safe class for an allow) the
  post's best label confirms. The best label is the post's winning label: a human's where a reviewer looked at
  the post (say after the frontier disagreed), else the audit's frontier label. With a 95% Wilson interval.
  This is the authoritative number; the workers' ``modcascade_audit_live_precision`` gauge only counts what one
  process saw since it started.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from pipeline.dataset.store import audit_rows, row_labels, winners
from pipeline.metrics import Interval, wilson_interval
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
class LiveCategory:
    """Live precision of the small model's final verdicts of one category, from the audit sample."""

    category: str
    """The audited verdicts' category (the safe class for allows)."""
    precision: Interval
    """Confirmed (successes) of audited (n), with its 95% Wilson interval."""
    frontier_agreed: int
    """Audits whose frontier judge agreed with the verdict (before any human review)."""
    reviewed: int
    """Audited posts whose best label is a human's."""


@dataclass(frozen=True, slots=True)
class DatasetStats:
    rows: int
    by_label: tuple[tuple[str, int], ...]
    by_source: tuple[tuple[str, int], ...]
    by_day: tuple[tuple[str, int], ...]
    multi_label: int
    disagreement: tuple[Disagreement, ...]
    compared_sources: tuple[LabelSource, ...]
    live: tuple[LiveCategory, ...] = ()
    audit_rows: int = 0
    """Audit labels, one per audited verdict (``live`` counts those whose audited category is known)."""

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


def live_precision(rows: pa.Table, *, safe: str) -> tuple[tuple[LiveCategory, ...], int]:
    """Live precision per audited category from every row of the dataset (not the de-duplicated view: an audit
    label a human label outranks still counts), and the number of audit rows. An audit row written without the
    audited verdict's category (``audited_category`` and ``audited_decision`` unset) counts only when its judge
    agreed (then the category is its own label)."""
    audits = audit_rows(rows)
    if audits.num_rows == 0:
        return (), 0
    best = {row["post_id"]: row for row in winners(rows).select(["post_id", "label", "labels", "source"]).to_pylist()}
    tallies: dict[str, list[int]] = {}
    for row in audits.select(["post_id", "label", "labels", "agrees", "audited_decision",
                              "audited_category"]).to_pylist():
        if row["audited_decision"] is not None:
            category = row["audited_category"] or safe
        elif row["agrees"] and len(row_labels(row)) == 1:
            category = row_labels(row)[0]
        else:
            continue
        winner = best[row["post_id"]]
        confirmed = row_labels(winner) == (category,)
        counts = tallies.setdefault(category, [0, 0, 0, 0])  # confirmed, audited, frontier agreed, reviewed
        counts[0] += int(confirmed)
        counts[1] += 1
        counts[2] += int(bool(row["agrees"]))
        counts[3] += int(winner["source"] == "human")
    live = tuple(LiveCategory(category, wilson_interval(c[0], c[1]), c[2], c[3])
                 for category, c in sorted(tallies.items()))
    return live, audits.num_rows


def compute_stats(current: pa.Table, *, safe: str, adjudicators: Iterable[LabelSource] = ("frontier",),
                  rows: pa.Table | None = None) -> DatasetStats:
    """Statistics of the de-duplicated view ``current`` (rows of :data:`pipeline.dataset.store.SCHEMA`); with
    ``rows`` (every row, :meth:`DatasetStore.rows`) also the live precision of the audit sample."""
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
    live, audits = live_precision(rows, safe=safe) if rows is not None else ((), 0)
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
        live=live,
        audit_rows=audits,
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
    _render_disagreement(stats, console)
    render_live(stats.live, console, audits=stats.audit_rows)


def _render_disagreement(stats: DatasetStats, console: Console) -> None:
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


def render_live(live: Sequence[LiveCategory], console: Console, *, audits: int) -> None:
    """The live precision table (audit sample), or a line saying there is none yet."""
    if not live:
        console.print("no audit labels yet: set the policy's audit rates to measure live precision")
        return
    table = Table(title=f"live precision of the small model's final verdicts, from {audits:,} audits "
                        "(best label: human review, else the frontier; 95% Wilson interval)", title_justify="left")
    for column in ("category", "audited", "confirmed", "precision", "95% interval", "frontier agreed",
                   "human reviewed"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for c in live:
        p = c.precision
        table.add_row(c.category, f"{p.n:,}", f"{p.successes:,}", f"{p.estimate:.1%}", f"{p.low:.1%} to {p.high:.1%}",
                      f"{c.frontier_agreed:,}", f"{c.reviewed:,}")
    console.print(table)


def _ranked(counts: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
