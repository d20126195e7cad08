"""Band proposal on synthetic scores: thresholds meet their targets on a *separate* split, the escalation cap
holds, the band-width sweep is monotone, and the fit/check split is stable.

Noise tolerance for "meets the target on a separate split": with 20,000 rows per split (1,500 to 2,000 per
category), the measured precision and miss rate must be within 0.03 of their targets. (The 95% Wilson interval
of the check half alone is too narrow a yardstick at that size: it ignores the fit half's noise, which moves the
chosen threshold by about as much.) With ~250 rows per category, as in the calibrate_scores test, precision
must pass the report's own verdict (the check half's 95% Wilson interval reaches the target) and the miss rate
must be within 0.05 (about 2.5 standard errors of fit and check noise combined at that size).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.evaluation import CalibrateOptions, Targets, calibrate_scores, propose_bands
from pipeline.evaluation.bands import Edges, narrowed, sweep, with_bands
from pipeline.evaluation.calibrate import fit_mask
from pipeline.evaluation.cascade import cascade_view
from pipeline.evaluation.report import ModelSummary
from pipeline.evaluation.thresholds import (
    PRECISION_RULES,
    PrecisionRule,
    allow_threshold,
    ceil_grid,
    cumulative_block_threshold,
    floor_grid,
    marginal_block_threshold,
    wilson_interval,
)
from tests.support.evaluation import default_policy, policy_labels, synthetic_scores

POLICY = default_policy()
LABELS = policy_labels(POLICY)
TOLERANCE = 0.03


SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
POSITIVE = np.array([True, True, False, True, False])


def test_cumulative_block_threshold_is_the_lowest_grid_value_whose_pooled_rows_meet_the_precision() -> None:
    # {>= 0.6} holds 3 of 4 positives = 0.75; anything lower adds the negative at 0.5.
    assert cumulative_block_threshold(SCORES, POSITIVE, 0.75) == 0.501
    assert cumulative_block_threshold(SCORES, POSITIVE, 1.0) == 0.701
    assert cumulative_block_threshold(np.array([0.9, 0.1]), np.array([False, True]), 0.9) is None


def test_marginal_block_threshold_holds_every_flagged_row_to_the_precision() -> None:
    # Isotonic fit, by score: 0.5 -> 0, 0.6 and 0.7 pooled -> 0.5, 0.8 and 0.9 -> 1; linear in between.
    assert marginal_block_threshold(SCORES, POSITIVE, 0.75) == 0.75
    assert marginal_block_threshold(SCORES, POSITIVE, 1.0) == 0.8
    assert marginal_block_threshold(np.array([0.9, 0.1]), np.array([False, True]), 0.9) is None
    assert marginal_block_threshold(SCORES, np.zeros(5, dtype=np.bool_), 0.5) is None


def test_allow_threshold_is_the_highest_grid_value_within_the_miss_rate() -> None:
    positives = np.arange(1, 11) / 10  # 0.1 .. 1.0
    assert allow_threshold(positives, 0.1) == 0.2  # only 0.1 falls below
    assert allow_threshold(positives, 0.0) == 0.1
    assert allow_threshold(positives, 1.0) == 1.0
    assert allow_threshold(np.array([]), 0.05) is None


def test_grid_rounding_tolerates_float_noise() -> None:
    assert floor_grid(0.3) == 0.3 and ceil_grid(0.3) == 0.3
    assert floor_grid(0.1 + 0.2) == 0.3 and ceil_grid(0.1 + 0.2) == 0.3
    assert floor_grid(0.12345) == 0.123 and ceil_grid(0.12345) == 0.124


def test_wilson_interval_matches_the_textbook_values() -> None:
    lo, hi = wilson_interval(81, 263)
    assert (lo, hi) == (pytest.approx(0.2553, abs=1e-4), pytest.approx(0.3662, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(20, 20)[1] == 1.0 and wilson_interval(20, 20)[0] > 0.8


def test_narrowing_moves_both_edges_to_the_cut_and_widening_to_the_ends() -> None:
    target = Edges(0.2, 0.8)
    assert narrowed(target, 0.5, 0.0) == target
    assert narrowed(target, 0.5, 1.0) == Edges(0.5, 0.5)
    assert narrowed(target, 0.5, -1.0) == Edges(0.0, 1.0)
    widths = [narrowed(target, 0.5, w) for w in np.linspace(-1, 1, 41)]
    assert all(a.allow_below <= b.allow_below and a.block_at >= b.block_at for a, b in itertools.pairwise(widths))


@pytest.fixture(scope="module")
def splits() -> tuple:  # type: ignore[type-arg]
    fit = synthetic_scores(LABELS, 20_000, seed=11, separation=3.0, noise=1.3)
    check = synthetic_scores(LABELS, 20_000, seed=12, separation=3.0, noise=1.3)
    return fit, check


@pytest.mark.parametrize("rule", PRECISION_RULES)
def test_proposed_bands_meet_the_targets_on_a_separate_split(
    splits: tuple, rule: PrecisionRule  # type: ignore[type-arg]
) -> None:
    fit, check = splits
    targets = Targets(precision=0.9, max_miss_rate=0.05, max_escalation=None, rule=rule)
    proposal = propose_bands(fit, POLICY, targets)
    assert not proposal.capped
    for band in proposal.categories:
        assert band.positives > 1000 and not band.notes
        scores, positive = check.one_vs_rest(band.category)
        flagged = scores >= band.proposed.block_at
        hits = int((flagged & positive).sum())
        precision = hits / int(flagged.sum())
        assert precision >= targets.precision - TOLERANCE, band
        missed = int((positive & (scores < band.proposed.allow_below)).sum())
        assert missed / int(positive.sum()) <= targets.max_miss_rate + TOLERANCE, band


def test_the_marginal_rule_blocks_no_lower_than_the_cumulative_one(splits: tuple) -> None:  # type: ignore[type-arg]
    fit, _ = splits
    marginal = propose_bands(fit, POLICY, Targets(max_escalation=None, rule="marginal")).bands()
    cumulative = propose_bands(fit, POLICY, Targets(max_escalation=None, rule="cumulative")).bands()
    assert all(marginal[c].block_at >= cumulative[c].block_at for c in marginal)
    assert any(marginal[c].block_at > cumulative[c].block_at + 0.05 for c in marginal)


def test_the_escalation_cap_narrows_the_bands_just_enough(splits: tuple) -> None:  # type: ignore[type-arg]
    fit, check = splits
    strict = Targets(precision=0.98, max_miss_rate=0.01, max_escalation=None)
    uncapped = propose_bands(fit, POLICY, strict)
    assert uncapped.escalation_rate > 0.2
    capped = propose_bands(fit, POLICY, Targets(precision=0.98, max_miss_rate=0.01, max_escalation=0.1))
    assert capped.capped and 0 < capped.narrowing < 1
    assert capped.target_escalation_rate == uncapped.escalation_rate
    assert capped.escalation_rate <= 0.1
    a_bit_less = {c.category: narrowed(c.target, c.cut, capped.narrowing - 0.002) for c in capped.categories}
    assert cascade_view(fit.probs, fit.y, LABELS, with_bands(POLICY, a_bit_less)).escalation_rate > 0.1
    on_check = cascade_view(check.probs, check.y, LABELS, with_bands(POLICY, capped.bands()))
    assert on_check.escalation_rate <= 0.1 + TOLERANCE


def test_the_sweep_trades_escalations_for_kept_accuracy_monotonically(splits: tuple) -> None:  # type: ignore[type-arg]
    fit, check = splits
    proposal = propose_bands(fit, POLICY, Targets(max_escalation=None))
    curve = sweep(check, POLICY, proposal)
    rates = [p.view.escalation_rate for p in curve]
    assert rates == sorted(rates, reverse=True)
    assert rates[0] > 0.95 and rates[-1] == 0.0
    assert proposal.narrowing in {p.narrowing for p in curve}
    kept = [p.view.kept_accuracy for p in curve[1:]]
    assert kept[0] is not None and kept[-1] is not None and kept[0] > kept[-1]


def test_unreachable_precision_hands_the_category_to_the_frontier_and_says_so() -> None:
    noisy = synthetic_scores(LABELS, 3000, seed=13, separation=0.3, noise=1.5)
    proposal = propose_bands(noisy, POLICY, Targets(precision=0.99, max_escalation=None))
    unreachable = [c for c in proposal.categories if c.proposed.block_at == 1.0]
    assert unreachable
    assert all("precision 0.99" in c.notes[0] for c in unreachable)


def test_a_category_without_rows_keeps_its_current_band() -> None:
    priors = [0.5, 0.5, 0, 0, 0, 0, 0]  # safe and spam only
    scored = synthetic_scores(LABELS, 2000, seed=14, priors=priors)
    proposal = propose_bands(scored, POLICY, Targets(max_escalation=None))
    hate = next(c for c in proposal.categories if c.category == "hate")
    band = POLICY.categories["hate"]
    assert hate.proposed == Edges(band.allow_below, band.block_at) and hate.positives == 0
    assert "no rows" in hate.notes[0]


def test_the_fit_check_split_is_stable_and_keeps_duplicates_together() -> None:
    texts = [f"post {i}" for i in range(4000)] + ["post 7"] * 3
    mask = fit_mask(texts, 0.5)
    assert (mask == fit_mask(texts, 0.5)).all()
    assert 0.45 < mask[:4000].mean() < 0.55
    assert mask[4000:].tolist() == [mask[7]] * 3
    assert not fit_mask(texts, 0.0).any() and fit_mask(texts, 1.0).all()


def test_calibrate_scores_measures_the_proposal_on_the_check_half_only() -> None:
    scored = synthetic_scores(LABELS, 6000, seed=15)
    options = CalibrateOptions(Targets(precision=0.9, max_miss_rate=0.05, max_escalation=None), method="isotonic")
    report = calibrate_scores(scored, POLICY, options, model=ModelSummary("m", "v"))
    assert report.fit_rows + report.check_rows == 6000 and abs(report.fit_rows - 3000) < 200
    assert report.ece_after < report.ece_before
    assert {c.category for c in report.checks} == set(POLICY.taxonomy.categories)
    assert all(c.meets_precision for c in report.checks)
    assert all(c.miss_rate is not None and c.miss_rate <= 0.05 + 0.05 for c in report.checks)
    assert all(c.calibrated is not None for c in report.checks)
    assert report.proposed.posts == report.live.posts == report.check_rows
    assert not report.proposal.capped
    data = report.to_json()
    assert set(data) >= {"schema_version", "calibration", "proposal", "check", "cascade", "curve", "targets"}
    spam = report.proposal.bands()["spam"]
    assert data["proposal"]["bands"]["spam"]["proposed"] == {"allow_below": spam.allow_below,
                                                             "block_at": spam.block_at}


def test_targets_outside_zero_one_are_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        Targets(precision=1.5)
