"""The learning curve of a ``--loop`` run: one row per round, as markdown, JSON and a PNG. Pure (the PNG is built
with the Agg renderer directly, as :mod:`pipeline.evaluation.plots` does)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


@dataclass(frozen=True, slots=True)
class RoundRow:
    """Round ``round``: the window it decided, with the model that decided it."""

    round: int
    model: str
    posts: int
    small_model_f1: float
    """Macro-F1 of the small model alone on this window (it was trained before the window: a forecast)."""
    cascade_f1: float
    escalation_rate: float
    frontier_calls: int
    frontier_usd: float
    """Paid, or (labels standing in) the would-be price of the calls."""
    labels_used: int
    """Frontier labels in the training set of the model that decided this window."""
    promoted: bool | None
    """Whether the candidate trained after the previous window passed the gate (None: the starting model)."""
    reference_f1: float | None = None
    """A model trained on every label before this window (full supervision), on the same window."""
    seconds: dict[str, float] | None = None
    """Where the round's time went: classify, adjudicate, train, evaluate."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RoundRow:
        return cls(**value)


def curve_markdown(rows: Sequence[RoundRow]) -> str:
    head = ("| round | model | posts | small-model macro-F1 | all-labels model F1 | cascade macro-F1 | escalation | "
            "frontier calls | frontier $ | labels used | gate | classify s | adjudicate s | train s | evaluate s |")
    lines = [head, "|" + "---:|" * 3 + "---:|" * 12]
    for r in rows:
        s = r.seconds or {}
        gate = "start" if r.promoted is None else "promoted" if r.promoted else "refused"
        ref = f"{r.reference_f1:.3f}" if r.reference_f1 is not None else "-"
        lines.append(f"| {r.round} | {r.model} | {r.posts:,} | {r.small_model_f1:.3f} | {ref} | {r.cascade_f1:.3f} | "
                     f"{r.escalation_rate:.1%} | {r.frontier_calls:,} | {r.frontier_usd:.4f} | {r.labels_used:,} | "
                     f"{gate} | {s.get('classify', 0):.1f} | {s.get('adjudicate', 0):.1f} | {s.get('train', 0):.1f} | "
                     f"{s.get('evaluate', 0):.1f} |")
    return "\n".join(lines) + "\n"


def improvement(rows: Sequence[RoundRow]) -> dict[str, float] | None:
    """First round against the last: small-model macro-F1 gained, and the frontier spend and labels it took."""
    if len(rows) < 2:
        return None
    first, last = rows[0], rows[-1]
    return {"small_model_f1_first": first.small_model_f1, "small_model_f1_last": last.small_model_f1,
            "gain": last.small_model_f1 - first.small_model_f1,
            "frontier_usd": sum(r.frontier_usd for r in rows[:-1]),
            "frontier_calls": sum(r.frontier_calls for r in rows[:-1]), "labels_used": last.labels_used}


def curve_png(path: Path, rows: Sequence[RoundRow], title: str) -> Path:
    """Macro-F1 per round (small model, all-labels model, cascade) and the escalation rate on a second axis."""
    figure = Figure(figsize=(7, 4.2))
    ax = figure.add_subplot()
    rounds = [r.round for r in rows]
    ax.plot(rounds, [r.small_model_f1 for r in rows], marker="o", label="small model (promoted)")
    ax.plot(rounds, [r.cascade_f1 for r in rows], marker="s", label="cascade")
    ref = [(r.round, r.reference_f1) for r in rows if r.reference_f1 is not None]
    if ref:
        ax.plot([x for x, _ in ref], [y for _, y in ref], marker="^", linestyle="--", label="all labels")
    ax.set(xlabel="round (window)", ylabel="macro-F1 on the window", ylim=(0, 1.02), title=title)
    ax.set_xticks(rounds)
    other = ax.twinx()
    other.bar(rounds, [r.escalation_rate for r in rows], alpha=0.15, color="grey", label="escalation rate")
    other.set(ylabel="escalation rate", ylim=(0, 1))
    lines, names = ax.get_legend_handles_labels()
    more, more_names = other.get_legend_handles_labels()
    ax.legend(lines + more, names + more_names, loc="lower right", fontsize=8)
    FigureCanvasAgg(figure)  # attaches the Agg canvas to the figure
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
