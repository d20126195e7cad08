"""One category's thresholds from its scores and labels, one-vs-rest: pure numpy.

Thresholds live on a grid of ``GRID`` steps (0.001): that is what a policy file can comfortably hold, and
every number is chosen and measured *at its grid value*, so rounding can never move a band off its target.
A row "is flagged at t" when the category's raw score is ``>= t`` (the policy's ``block_at`` rule) and "falls
below t" when it is ``< t`` (the ``allow_below`` rule).

- :func:`marginal_block_threshold` (rule ``marginal``, the default): the lowest t from which *every* flagged row is the
  category with probability at least ``precision``, that probability estimated by one-vs-rest isotonic
  regression of the label on the raw score. The map is monotone, so "probability >= precision" is exactly
  "raw score >= t". Every flagged row clearing the bar implies the flagged rows together clear it too.
- :func:`cumulative_block_threshold` (rule ``cumulative``): the lowest t whose flagged rows, pooled, are at least
  ``precision`` of this category. It blocks more, but it lets t slide down for as long as the confident rows
  carry the doubtful ones: on a well-separated model t ends near 0, blocking posts the model itself thinks
  are most likely something else (seen: spam block_at 0.016 on the demo model).
- :func:`allow_threshold`: the highest t below which at most ``max_miss_rate`` of this category's rows fall:
  the share of harmful posts the small model may allow without asking the frontier (its *miss rate*).
- :func:`best_cut`: the F1-best single threshold between the two; where a band collapses to when it must
  narrow (no band at all: every post is allowed or acted on).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from pipeline.evaluation.calibration import one_vs_rest_isotonic

PrecisionRule = Literal["marginal", "cumulative"]
PRECISION_RULES: tuple[PrecisionRule, ...] = ("marginal", "cumulative")

GRID = 1000
"""Thresholds are multiples of 1 / GRID."""
_EPS = 1e-6
_GRID_VALUES = np.arange(GRID + 1, dtype=np.float64) / GRID


def floor_grid(x: float) -> float:
    """The largest grid value not above ``x`` (float noise tolerated)."""
    return round(math.floor(x * GRID + _EPS) / GRID, 6)


def ceil_grid(x: float) -> float:
    """The smallest grid value not below ``x`` (float noise tolerated)."""
    return round(math.ceil(x * GRID - _EPS) / GRID, 6)


def _counts_at_or_above(scores: NDArray[Any]) -> NDArray[np.int64]:
    """For every grid value t, how many of ``scores`` are >= t."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    return np.asarray(len(ordered) - np.searchsorted(ordered, _GRID_VALUES, side="left"), dtype=np.int64)


def marginal_block_threshold(scores: NDArray[Any], positive: NDArray[np.bool_], precision: float) -> float | None:
    """The lowest grid t whose rows' estimated probability of being ``positive`` is at least ``precision``
    (rule ``marginal``); ``None`` when no score reaches it."""
    if not positive.any():
        return None
    local = one_vs_rest_isotonic(scores, positive).predict(_GRID_VALUES)
    ok = local >= precision - 1e-9
    return float(_GRID_VALUES[np.argmax(ok)]) if ok.any() else None


def cumulative_block_threshold(scores: NDArray[Any], positive: NDArray[np.bool_], precision: float) -> float | None:
    """The lowest grid t where ``positive`` makes up at least ``precision`` of the rows with score >= t
    (rule ``cumulative``); ``None`` when no t reaches it (the category's scores cannot separate it that well)."""
    flagged = _counts_at_or_above(scores)
    hits = _counts_at_or_above(np.asarray(scores)[positive])
    ok = (flagged > 0) & (hits >= precision * flagged - 1e-9)
    return float(_GRID_VALUES[np.argmax(ok)]) if ok.any() else None


def block_threshold(rule: PrecisionRule) -> Callable[[NDArray[Any], NDArray[np.bool_], float], float | None]:
    """The ``block_at`` search for ``rule``."""
    return {"marginal": marginal_block_threshold, "cumulative": cumulative_block_threshold}[rule]


def allow_threshold(positive_scores: NDArray[Any], max_miss_rate: float) -> float | None:
    """The highest grid t with at most ``max_miss_rate`` of ``positive_scores`` below it; ``None`` without
    positives (no evidence: the caller keeps the current value)."""
    n = len(positive_scores)
    if n == 0:
        return None
    below = n - _counts_at_or_above(positive_scores)
    ok = below <= max_miss_rate * n + 1e-9
    return float(_GRID_VALUES[len(ok) - 1 - np.argmax(ok[::-1])])  # ok[0] holds: nothing is below 0


def best_cut(scores: NDArray[Any], positive: NDArray[np.bool_], lo: float, hi: float) -> float:
    """The grid t in [lo, hi] with the best F1 of "score >= t means this category" (ties: the lowest t);
    ``hi`` when the category has no positive rows (flagging them could only be wrong)."""
    n_positive = int(np.count_nonzero(positive))
    window = (lo - _EPS <= _GRID_VALUES) & (hi + _EPS >= _GRID_VALUES)
    if n_positive == 0 or not window.any():
        return hi
    flagged = _counts_at_or_above(scores)
    hits = _counts_at_or_above(np.asarray(scores)[positive])
    f1 = np.where(window, 2 * hits / (flagged + n_positive), -1.0)
    return float(_GRID_VALUES[np.argmax(f1)])


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% for the default ``z``); (0, 1) without trials.

    Unlike the normal approximation it stays inside [0, 1] and behaves at proportions near 0 or 1, which is
    where precision targets live.
    """
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
