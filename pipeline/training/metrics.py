"""Pure evaluation metrics (numpy / scikit-learn): per-class scores, macro-F1, accuracy and calibration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

ECE_BINS = 15


class ClassScores(TypedDict):
    precision: float
    recall: float
    f1: float
    support: int


class Evaluation(TypedDict):
    macro_f1: float
    accuracy: float
    ece: float
    per_class: dict[str, ClassScores]


def macro_f1(y_true: Sequence[int] | NDArray[Any], y_pred: Sequence[int] | NDArray[Any],
             n_classes: int) -> float:
    """Unweighted mean of the per-class F1 over all ``n_classes`` (a class never predicted nor present scores 0)."""
    return float(f1_score(y_true, y_pred, labels=list(range(n_classes)), average="macro", zero_division=0))


def expected_calibration_error(probs: NDArray[Any], y_true: Sequence[int] | NDArray[Any],
                               n_bins: int = ECE_BINS) -> float:
    """ECE over equal-width bins of the max probability: sum over bins of |accuracy - confidence| * share.

    Bins are (lo, hi] except the first, which also holds a confidence of exactly 0.
    """
    p = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(y_true)
    if p.ndim != 2 or p.shape[0] != labels.shape[0]:
        raise ValueError(f"probs must be (n, classes) matching y_true; got {p.shape} and {labels.shape}")
    if p.shape[0] == 0:
        return 0.0
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == labels).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += abs(correct[mask].mean() - confidence[mask].mean()) * mask.mean()
    return float(ece)


def evaluate(probs: NDArray[Any], y_true: Sequence[int] | NDArray[Any], labels: Sequence[str]) -> Evaluation:
    """All validation metrics for the model card; ``labels[i]`` names class ``i``."""
    y = np.asarray(y_true)
    pred = np.asarray(probs).argmax(axis=1)
    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=ids, zero_division=0)
    per_class: dict[str, ClassScores] = {
        name: ClassScores(precision=float(precision[i]), recall=float(recall[i]), f1=float(f1[i]),
                          support=int(support[i]))
        for i, name in enumerate(labels)
    }
    return Evaluation(macro_f1=macro_f1(y, pred, len(labels)), accuracy=float(accuracy_score(y, pred)),
                      ece=expected_calibration_error(np.asarray(probs), y), per_class=per_class)
