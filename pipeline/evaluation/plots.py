"""The PNG plots of `eval` and `calibrate`. Figures are built with ``matplotlib.figure.Figure`` and the Agg
renderer directly, never through pyplot: no global backend to select, no GUI, nothing left open."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.evaluation.bands import CurvePoint
from pipeline.evaluation.cascade import CascadeView
from pipeline.evaluation.quality import ReliabilityBin

_DPI = 120


def reliability_diagram(path: Path, series: Mapping[str, Sequence[ReliabilityBin]], title: str) -> Path:
    """Accuracy against confidence per bin, one line per series, with the diagonal of perfect calibration;
    marker area shows how many rows a bin holds."""
    figure = Figure(figsize=(5.5, 5))
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    for name, bins in series.items():
        total = sum(b.count for b in bins) or 1
        ax.plot([b.confidence for b in bins], [b.accuracy for b in bins], marker="o", label=name)
        ax.scatter([b.confidence for b in bins], [b.accuracy for b in bins],
                   s=[20 + 600 * b.count / total for b in bins], alpha=0.25)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)", ylabel="accuracy", title=title)
    ax.legend(loc="upper left")
    return _save(figure, path)


def confusion_plot(path: Path, labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str) -> Path:
    """Row-normalised confusion matrix (each true class sums to 1), with the counts written in."""
    figure = Figure(figsize=(1.0 + 0.8 * len(labels), 0.8 + 0.7 * len(labels)))
    ax = figure.add_subplot()
    shares = [[v / (sum(row) or 1) for v in row] for row in matrix]
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if shares[i][j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _save(figure, path)


def escalation_curve(path: Path, curve: Sequence[CurvePoint], *, proposed: float, live: CascadeView,
                     title: str) -> Path:
    """Quality of what the small model keeps against the escalation rate, over band widths; the proposal is
    marked, and the live policy's kept accuracy is a star."""
    figure = Figure(figsize=(6.5, 4.5))
    ax = figure.add_subplot()
    x = [p.view.escalation_rate for p in curve]
    for name, values in (("accuracy of kept posts", [p.view.kept_accuracy for p in curve]),
                         ("precision of blocks/reviews", [p.view.action_precision for p in curve]),
                         ("harmful posts allowed", [p.view.missed_harm_rate for p in curve])):
        points = [(xi, v) for xi, v in zip(x, values, strict=True) if v is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=name)
    chosen = next(p for p in curve if p.narrowing == proposed)
    ax.axvline(chosen.view.escalation_rate, color="grey", linestyle=":", label="proposed bands")
    if live.kept_accuracy is not None:
        ax.plot([live.escalation_rate], [live.kept_accuracy], marker="*", markersize=12, linestyle="none",
                color="black", label="live policy (kept accuracy)")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="escalation rate (share of posts sent to the frontier)",
           ylabel="share", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(figure, path)


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)  # attaches the Agg canvas to the figure
    for ax in figure.axes:
        ax.title.set_fontsize(9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=_DPI)
    return path
