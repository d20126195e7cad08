"""What the small model gets right, from a probability matrix and the true labels: pure numpy.

The headline numbers (per-class precision/recall/F1, macro-F1, accuracy, ECE) come from
:func:`pipeline.training.metrics.evaluate`, so a model card and an evaluation report never disagree. This module
adds what a report needs on top: the worst slices, the confusion matrix and the bins of the reliability diagram.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import confusion_matrix

from pipeline.training.metrics import ECE_BINS, ClassScores


@dataclass(frozen=True, slots=True)
class SliceScore:
    """One class as a slice of the data: its F1 and how many rows carry its label."""

    label: str
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class WorstSlice:
    """The two classes a model is most likely to fail silently on.

    ``lowest_f1``: the class with the lowest F1 (ties: the rarer, then label order).
    ``rarest``: the class with the fewest rows (ties: the lower F1, then label order); rare classes have the
    noisiest scores and are the first to regress when the data mix shifts.
    Classes without a row in the data are left out of both: their F1 says nothing about the model.
    """

    lowest_f1: SliceScore
    rarest: SliceScore


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """One bin of the reliability diagram: rows whose top probability is in (lo, hi] (the first bin also holds 0),
    their mean top probability and the share of them whose top class is right."""

    lo: float
    hi: float
    count: int
    confidence: float
    accuracy: float


def worst_slice(per_class: dict[str, ClassScores]) -> WorstSlice:
    """The lowest-F1 and the rarest class among those with at least one row; raises if there is none."""
    present = sorted((name, s) for name, s in per_class.items() if s["support"] > 0)
    if not present:
        raise ValueError("no class has a row in the data: nothing to rank")
    slices = [SliceScore(name, s["f1"], s["support"]) for name, s in present]
    return WorstSlice(lowest_f1=min(slices, key=lambda s: (s.f1, s.support, s.label)),
                      rarest=min(slices, key=lambda s: (s.support, s.f1, s.label)))


def reliability_bins(probs: NDArray[Any], y_true: NDArray[Any], n_bins: int = ECE_BINS) -> tuple[ReliabilityBin, ...]:
    """Equal-width bins of the top probability, binned exactly as
    :func:`pipeline.training.metrics.expected_calibration_error` bins them (so the diagram shows that number);
    empty bins are left out."""
    p = np.asarray(probs, dtype=np.float64)
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == np.asarray(y_true)
    index = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        mask = index == b
        if mask.any():
            bins.append(ReliabilityBin(lo=b / n_bins, hi=(b + 1) / n_bins, count=int(mask.sum()),
                                       confidence=float(confidence[mask].mean()),
                                       accuracy=float(correct[mask].mean())))
    return tuple(bins)


def confusion(probs: NDArray[Any], y_true: NDArray[Any], n_classes: int) -> tuple[tuple[int, ...], ...]:
    """Counts of (true class, predicted class = argmax): rows are the truth, columns the prediction."""
    matrix = confusion_matrix(np.asarray(y_true), np.asarray(probs).argmax(axis=1), labels=list(range(n_classes)))
    return tuple(tuple(int(v) for v in row) for row in matrix)

