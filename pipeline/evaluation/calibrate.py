"""`modcascade calibrate` as a library: split, fit a calibration, propose bands, check them on held-out rows. Pure.

The rows are split in two by a hash of their text (stable across runs and machines, and duplicates of one
text always land on the same side, so nothing leaks): the *fit* half chooses the calibration and the bands,
the *check* half only measures them. Every number a report calls "measured" comes from the check half.

Noise: a band's precision on the check half is a binomial proportion, reported with its 95% Wilson interval.
The target counts as met within noise when the interval reaches it (``BandCheck.meets_precision``, and likewise
``meets_miss_rate``); with a few dozen flagged rows that interval is ±0.1 wide, so small check halves cannot
confirm tight targets. The interval covers the check half's noise only: the fit half's noise moves the chosen
threshold by about as much again, so a verdict of "not met" by a small margin can be chance.

Expect the measured precision (and miss rate) to land a little on the wrong side of the target on average:
each threshold is the one that *just* reaches its target on the fit half, and part of that reach is the fit
half's own noise. Ask for a point or two more than you need when there are few rows per category.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.errors import ConfigError
from pipeline.evaluation.bands import BandProposal, CurvePoint, Edges, Targets, propose_bands, sweep, with_bands
from pipeline.evaluation.calibration import IsotonicCalibration, Method, fit_calibrator
from pipeline.evaluation.cascade import CascadeView, cascade_view
from pipeline.evaluation.quality import ReliabilityBin, reliability_bins
from pipeline.evaluation.report import ModelSummary
from pipeline.evaluation.scoring import Scored
from pipeline.evaluation.thresholds import wilson_interval
from pipeline.policy import Policy
from pipeline.training.metrics import expected_calibration_error

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class CalibrateOptions:
    targets: Targets = field(default_factory=Targets)
    method: Method = "temperature"
    fit_share: float = 0.5
    """Share of the rows (by text hash) that fit; the rest check."""


@dataclass(frozen=True, slots=True)
class BandCheck:
    """One proposed band measured on the check half, one-vs-rest.

    ``flagged``: rows at or above ``block_at``, ``flagged_correct`` of them labelled with the category.
    ``positives``: rows labelled with the category, ``missed`` of them below ``allow_below``.
    ``calibrated``: the band edges as probabilities of the category (isotonic calibration only; temperature
    scaling rescales the whole softmax, so one category's probability depends on the other scores as well).
    """

    category: str
    edges: Edges
    flagged: int
    flagged_correct: int
    positives: int
    missed: int
    targets: Targets
    calibrated: Edges | None = None

    @property
    def precision(self) -> float | None:
        return self.flagged_correct / self.flagged if self.flagged else None

    @property
    def precision_interval(self) -> tuple[float, float]:
        return wilson_interval(self.flagged_correct, self.flagged)

    @property
    def meets_precision(self) -> bool | None:
        """Whether the 95% interval reaches the target; ``None`` when the band flagged nothing here."""
        return self.precision_interval[1] >= self.targets.precision if self.flagged else None

    @property
    def miss_rate(self) -> float | None:
        return self.missed / self.positives if self.positives else None

    @property
    def miss_interval(self) -> tuple[float, float]:
        return wilson_interval(self.missed, self.positives)

    @property
    def meets_miss_rate(self) -> bool | None:
        """Whether the 95% interval of the miss rate reaches down to the target; ``None`` without rows of the
        category here."""
        return self.miss_interval[0] <= self.targets.max_miss_rate if self.positives else None

    def to_json(self) -> dict[str, Any]:
        return {"category": self.category, **asdict(self.edges), "flagged": self.flagged,
                "precision": self.precision, "precision_ci95": list(self.precision_interval),
                "meets_precision": self.meets_precision, "positives": self.positives,
                "missed": self.missed, "miss_rate": self.miss_rate, "miss_rate_ci95": list(self.miss_interval),
                "meets_miss_rate": self.meets_miss_rate,
                "calibrated": None if self.calibrated is None else asdict(self.calibrated)}


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    """Everything `modcascade calibrate` found; the views, checks and curve are on the check half.

    ``calibration.json`` is :meth:`to_json`: ``schema_version``, ``model``, ``policy`` {name, version,
    proposed_version}, ``split``, ``targets``, ``calibration`` {method, params, ece_before, ece_after},
    ``proposal`` {capped, narrowing, fit escalation rates, ``bands``: category -> {current, target, cut, proposed,
    fit_positives, notes}}, ``check``: one :class:`BandCheck` per category, ``cascade`` {live, proposed} and
    ``curve`` (cascade views as in ``eval.json``, the curve's with their ``narrowing``).
    """

    model: ModelSummary
    method: Method
    params: dict[str, Any]
    fit_rows: int
    check_rows: int
    ece_before: float
    ece_after: float
    reliability_before: tuple[ReliabilityBin, ...]
    reliability_after: tuple[ReliabilityBin, ...]
    proposal: BandProposal
    checks: tuple[BandCheck, ...]
    live: CascadeView
    proposed: CascadeView
    curve: tuple[CurvePoint, ...]

    def to_json(self) -> dict[str, Any]:
        p = self.proposal
        return {
            "schema_version": SCHEMA_VERSION,
            "model": asdict(self.model),
            "policy": {"name": self.live.policy_name, "version": self.live.policy_version,
                       "proposed_version": self.proposed.policy_version},
            "split": {"fit_rows": self.fit_rows, "check_rows": self.check_rows, "by": "sha256(text)"},
            "targets": asdict(p.targets),
            "calibration": {"method": self.method, "params": self.params, "ece_before": self.ece_before,
                            "ece_after": self.ece_after},
            "proposal": {
                "capped": p.capped, "narrowing": p.narrowing, "fit_escalation_rate": p.escalation_rate,
                "fit_escalation_rate_at_targets": p.target_escalation_rate,
                "bands": {c.category: {"current": asdict(c.current), "target": asdict(c.target), "cut": c.cut,
                                       "proposed": asdict(c.proposed), "fit_positives": c.positives,
                                       "notes": list(c.notes)} for c in p.categories},
            },
            "check": [c.to_json() for c in self.checks],
            "cascade": {"live": self.live.to_json(), "proposed": self.proposed.to_json()},
            "curve": [{"narrowing": point.narrowing, **point.view.to_json()} for point in self.curve],
        }


def fit_mask(texts: Sequence[str], fit_share: float) -> NDArray[np.bool_]:
    """True for the rows in the fit half: the first 8 bytes of sha256(text), as a fraction of 2**64, below
    ``fit_share``."""
    cut = fit_share * 2**64
    return np.array([int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "big") < cut for t in texts],
                    dtype=np.bool_)


def calibrate_scores(scored: Scored, policy: Policy, options: CalibrateOptions, *,
                     model: ModelSummary) -> CalibrationReport:
    """The whole of `modcascade calibrate` after scoring (see the module docstring)."""
    in_fit = fit_mask(scored.texts, options.fit_share)
    fit, check = scored.subset(in_fit), scored.subset(~in_fit)
    if len(fit) == 0 or len(check) == 0:
        raise ConfigError(f"{len(scored)} rows split into {len(fit)} to fit and {len(check)} to check: calibrate "
                          "needs labelled rows on both sides (a few hundred at least)")
    calibrator = fit_calibrator(options.method, fit.probs, fit.y)
    calibrated = calibrator.transform(check.probs)
    proposal = propose_bands(fit, policy, options.targets)
    proposed_policy = with_bands(policy, proposal.bands())
    checks = tuple(
        _check_band(check, c.category, c.proposed, options.targets,
                    calibrator if isinstance(calibrator, IsotonicCalibration) else None)
        for c in proposal.categories)
    return CalibrationReport(
        model=model, method=options.method, params=calibrator.params(), fit_rows=len(fit), check_rows=len(check),
        ece_before=expected_calibration_error(check.probs, check.y),
        ece_after=expected_calibration_error(calibrated, check.y),
        reliability_before=reliability_bins(check.probs, check.y),
        reliability_after=reliability_bins(calibrated, check.y),
        proposal=proposal, checks=checks,
        live=cascade_view(check.probs, check.y, check.labels, policy),
        proposed=cascade_view(check.probs, check.y, check.labels, proposed_policy),
        curve=sweep(check, policy, proposal),
    )


def _check_band(check: Scored, category: str, edges: Edges, targets: Targets,
                isotonic: IsotonicCalibration | None) -> BandCheck:
    scores, positive = check.one_vs_rest(category)
    flagged = scores >= edges.block_at
    calibrated = None
    if isotonic is not None:
        low, high = isotonic.class_probability(check.labels.index(category), np.array([edges.allow_below,
                                                                                        edges.block_at]))
        calibrated = Edges(float(low), float(high))
    return BandCheck(category=category, edges=edges, flagged=int(flagged.sum()),
                     flagged_correct=int((flagged & positive).sum()), positives=int(positive.sum()),
                     missed=int((positive & (scores < edges.allow_below)).sum()), targets=targets,
                     calibrated=calibrated)
