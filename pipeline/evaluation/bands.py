"""Propose a policy's bands from scored, labelled rows; sweep band widths for the cost/quality curve. Pure.

Bands are thresholds on the *raw* scores, because that is what the stream compares with them (see
:mod:`pipeline.evaluation.calibration`). Where a rule reads a probability off a calibration, the calibration is
a monotone map of the raw score, so the threshold it gives is exactly a raw score.

1. Per category (:mod:`pipeline.evaluation.thresholds`): ``block_at`` meets the precision target (by default
   for every post it blocks, not only on average) and ``allow_below`` the miss-rate target on the rows given
   (the *fit* rows). A category whose scores never reach the precision gets ``block_at`` 1.0: the small model
   never acts on it alone, the frontier decides. A category without rows keeps its current band.
2. The escalation cap: the whole policy's escalation rate on the fit rows (through the real ``decide``) must
   stay at or under ``max_escalation``. If the targets' bands exceed it, every band narrows by the same share
   ``narrowing`` toward its F1-best cut point until the cap holds; the targets are then no longer guaranteed
   and the proposal says so (``capped``).

Narrowing ``w`` in [0, 1] moves ``allow_below`` up and ``block_at`` down by ``w`` of their distance to the
cut (1 = no band). The curve also widens: ``w`` in [-1, 0) moves them toward 0 and 1 (-1 = escalate nearly
everything), so ops see both directions from the proposal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.evaluation.cascade import CascadeView, cascade_view
from pipeline.evaluation.scoring import Scored
from pipeline.evaluation.thresholds import (
    PrecisionRule,
    allow_threshold,
    best_cut,
    block_threshold,
    ceil_grid,
    floor_grid,
)
from pipeline.policy import Policy

CURVE_NARROWINGS = (-1.0, -0.75, -0.5, -0.25, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True, slots=True)
class Targets:
    """What the proposed bands aim for, measured one-vs-rest per category on the fit rows.

    ``precision``: of the posts at or above ``block_at``, the share that truly are the category; with rule
    ``marginal`` (default) also the estimated probability of the category for each single one of them (see
    :mod:`pipeline.evaluation.thresholds`).
    ``max_miss_rate``: of the category's posts, the share allowed below ``allow_below``.
    ``max_escalation``: of all posts, the share escalated to the frontier (``None``: no cap).
    """

    precision: float = 0.9
    max_miss_rate: float = 0.05
    max_escalation: float | None = 0.2
    rule: PrecisionRule = "marginal"

    def __post_init__(self) -> None:
        for name, value in (("precision", self.precision), ("max_miss_rate", self.max_miss_rate),
                            ("max_escalation", self.max_escalation)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} {value} is outside [0, 1]")


@dataclass(frozen=True, slots=True)
class Edges:
    """A band's two numbers: allow below ``allow_below``, act at or above ``block_at``."""

    allow_below: float
    block_at: float


@dataclass(frozen=True, slots=True)
class CategoryBands:
    """How one category's band was found. ``target`` meets the targets; ``proposed`` is after the cap."""

    category: str
    current: Edges
    target: Edges
    cut: float
    proposed: Edges
    positives: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BandProposal:
    categories: tuple[CategoryBands, ...]
    targets: Targets
    narrowing: float
    """Share by which the target bands were narrowed to honour the cap (0: not at all)."""
    target_escalation_rate: float
    """Escalation rate of the target bands on the fit rows."""
    escalation_rate: float
    """Escalation rate of the proposed bands on the fit rows."""

    @property
    def capped(self) -> bool:
        """Whether the escalation cap narrowed the bands (and the precision / miss targets may be missed)."""
        return self.narrowing > 0

    def bands(self) -> dict[str, Edges]:
        return {c.category: c.proposed for c in self.categories}


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """The cascade at one band width (see the module docstring for ``narrowing``)."""

    narrowing: float
    view: CascadeView


def narrowed(target: Edges, cut: float, narrowing: float) -> Edges:
    """``target`` moved toward ``cut`` (narrowing > 0) or toward [0, 1] (narrowing < 0), on the grid.

    Rounding goes outward (``allow_below`` down, ``block_at`` up), so a narrower band always lies inside a wider
    one and the escalation rate can only fall as ``narrowing`` grows.
    """
    if narrowing >= 0:
        allow = target.allow_below + narrowing * (cut - target.allow_below)
        block = target.block_at - narrowing * (target.block_at - cut)
    else:
        allow = target.allow_below * (1 + narrowing)
        block = target.block_at - narrowing * (1.0 - target.block_at)
    return Edges(floor_grid(allow), ceil_grid(block))


def with_bands(policy: Policy, bands: Mapping[str, Edges]) -> Policy:
    """``policy`` with new band numbers, validated again (so its ``version`` is right)."""
    data = policy.model_dump()
    for category, edges in bands.items():
        data["categories"][category].update(allow_below=edges.allow_below, block_at=edges.block_at)
    return Policy.model_validate(data)


def target_bands(fit: Scored, policy: Policy, targets: Targets) -> tuple[CategoryBands, ...]:
    """Step 1 of the module docstring, for every category of the policy's taxonomy."""
    result = []
    for category in policy.taxonomy.categories:
        scores, positive = fit.one_vs_rest(category)
        band = policy.categories[category]
        current = Edges(band.allow_below, band.block_at)
        notes: list[str] = []
        block = block_threshold(targets.rule)(scores, positive, targets.precision)
        allow = allow_threshold(scores[positive], targets.max_miss_rate)
        if allow is None:
            notes.append("no rows of this category in the fit half: current band kept")
            result.append(CategoryBands(category, current, current, current.block_at, current, 0, tuple(notes)))
            continue
        if block is None:
            block = 1.0
            notes.append(f"no threshold reaches precision {targets.precision:.2f}: block_at 1.0, the frontier decides "
                         "every post above allow_below")
        if allow > block:
            allow = block  # the miss target is then over-met: nothing of the category falls in a band
        cut = best_cut(scores, positive, allow, block)
        target = Edges(allow, block)
        result.append(CategoryBands(category, current, target, cut, target, int(positive.sum()), tuple(notes)))
    return tuple(result)


def propose_bands(fit: Scored, policy: Policy, targets: Targets) -> BandProposal:
    """Bands that meet ``targets`` on the ``fit`` rows, narrowed as little as the escalation cap needs."""
    found = target_bands(fit, policy, targets)

    def rate(narrowing: float) -> float:
        bands = {c.category: narrowed(c.target, c.cut, narrowing) for c in found}
        return cascade_view(fit.probs, fit.y, fit.labels, with_bands(policy, bands)).escalation_rate

    target_rate = rate(0.0)
    narrowing = 0.0
    if targets.max_escalation is not None and target_rate > targets.max_escalation:
        lo, hi = 0.0, 1.0  # rate(hi) <= cap always: at 1 there is no band, so nothing escalates
        while hi - lo > 1e-4:
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if rate(mid) <= targets.max_escalation else (mid, hi)
        narrowing = hi
    categories = tuple(
        CategoryBands(c.category, c.current, c.target, c.cut, narrowed(c.target, c.cut, narrowing), c.positives,
                      c.notes) for c in found)
    return BandProposal(categories=categories, targets=targets, narrowing=narrowing,
                        target_escalation_rate=target_rate, escalation_rate=rate(narrowing))


def sweep(scored: Scored, policy: Policy, proposal: BandProposal,
          narrowings: Sequence[float] = CURVE_NARROWINGS) -> tuple[CurvePoint, ...]:
    """The cascade on ``scored`` at each band width around the proposal's targets (the proposal's own
    narrowing included), ordered from the widest bands to none."""
    points = sorted({*narrowings, proposal.narrowing})
    return tuple(
        CurvePoint(w, cascade_view(scored.probs, scored.y, scored.labels, with_bands(
            policy, {c.category: narrowed(c.target, c.cut, w) for c in proposal.categories})))
        for w in points)

