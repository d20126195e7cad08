"""`modcascade eval` without a model: the report's numbers, its JSON contract, the worst slices and the cascade
view, from synthetic probabilities."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pipeline import codec
from pipeline.errors import ConfigError, ModelMismatchError
from pipeline.evaluation import Scored, evaluate_scores
from pipeline.evaluation.cascade import cascade_view, cost_per_1k
from pipeline.evaluation.quality import reliability_bins, worst_slice
from pipeline.evaluation.report import DataSummary, ModelSummary
from pipeline.evaluation.scoring import class_ids
from pipeline.policy import decide
from pipeline.training.data import Example
from pipeline.training.metrics import ClassScores, evaluate, expected_calibration_error
from tests.support.evaluation import default_policy, policy_labels, synthetic_scores

POLICY = default_policy()
LABELS = policy_labels(POLICY)
MODEL = ModelSummary("m", "v1")
DATA = DataSummary(None, 0, "0" * 64)

TOP_KEYS = {"schema_version", "model", "data", "labels", "macro_f1", "accuracy", "ece", "worst_slice_f1",
            "per_class", "worst_slice", "confusion", "reliability", "cascade", "live_precision"}
CASCADE_KEYS = {"policy", "posts", "outcomes", "escalation_rate", "escalations_by_category", "kept",
                "kept_accuracy", "action_precision", "missed_harm_rate", "cost_per_1k_posts"}


def test_the_json_has_the_documented_shape_and_survives_the_codec() -> None:
    scored = synthetic_scores(LABELS, 600, seed=1)
    report = evaluate_scores(scored, POLICY, model=MODEL, data=DATA)
    data = codec.loads(codec.dumps_pretty(report.to_json()))
    assert set(data) == TOP_KEYS and data["schema_version"] == 1
    assert set(data["per_class"]) == set(LABELS)
    assert all(set(s) == {"precision", "recall", "f1", "support"} for s in data["per_class"].values())
    assert set(data["worst_slice"]) == {"lowest_f1", "rarest"}
    assert data["worst_slice_f1"] == data["worst_slice"]["lowest_f1"]["f1"] == min(
        s["f1"] for s in data["per_class"].values())
    assert set(data["cascade"]) == CASCADE_KEYS
    assert set(data["cascade"]["outcomes"]) == {"allow", "block", "review", "escalate"}
    assert sum(map(sum, data["confusion"]["matrix"])) == 600


def test_headline_numbers_are_the_training_metrics() -> None:
    scored = synthetic_scores(LABELS, 500, seed=2)
    report = evaluate_scores(scored, None, model=MODEL, data=DATA)
    expected = evaluate(scored.probs, scored.y, scored.labels)
    assert (report.macro_f1, report.accuracy, report.ece) == (expected["macro_f1"], expected["accuracy"],
                                                              expected["ece"])
    assert report.per_class == expected["per_class"]
    assert report.cascade is None and report.to_json()["cascade"] is None


def test_the_reliability_bins_add_up_to_the_reported_ece() -> None:
    scored = synthetic_scores(LABELS, 800, seed=3, separation=4.0)
    bins = reliability_bins(scored.probs, scored.y)
    total = sum(b.count for b in bins)
    assert total == 800
    from_bins = sum(abs(b.accuracy - b.confidence) * b.count for b in bins) / total
    assert from_bins == pytest.approx(expected_calibration_error(scored.probs, scored.y))
    assert all(b.lo < b.confidence <= b.hi or (b.lo == 0 and b.confidence == 0) for b in bins)


def _scores(f1: float, support: int) -> ClassScores:
    return ClassScores(precision=f1, recall=f1, f1=f1, support=support)


def test_worst_slice_names_the_lowest_f1_and_the_rarest_class_and_skips_absent_ones() -> None:
    per_class = {"safe": _scores(0.95, 500), "spam": _scores(0.60, 90), "hate": _scores(0.80, 12),
                 "sexual": _scores(0.0, 0)}
    worst = worst_slice(per_class)
    assert (worst.lowest_f1.label, worst.lowest_f1.f1, worst.lowest_f1.support) == ("spam", 0.60, 90)
    assert (worst.rarest.label, worst.rarest.support) == ("hate", 12)


def test_worst_slice_ties_go_to_the_rarer_then_the_weaker_class() -> None:
    worst = worst_slice({"a": _scores(0.5, 40), "b": _scores(0.5, 30), "c": _scores(0.9, 30)})
    assert worst.lowest_f1.label == "b"
    assert worst.rarest.label == "b"


def test_the_cascade_view_counts_exactly_what_decide_does() -> None:
    scored = synthetic_scores(LABELS, 1000, seed=4, separation=2.5)
    view = cascade_view(scored.probs, scored.y, scored.labels, POLICY)
    outcomes = [decide(dict(zip(LABELS, row, strict=True)), POLICY) for row in scored.probs.tolist()]
    truth = [LABELS[i] for i in scored.y]
    kinds = Counter(o.kind for o in outcomes)
    assert dict(view.outcomes) == {k: kinds[k] for k in ("allow", "block", "review", "escalate")}
    assert view.escalated == kinds["escalate"] > 0 and view.kept == 1000 - kinds["escalate"]
    assert dict(view.escalations_by_category) == {
        c: sum(1 for o in outcomes if o.kind == "escalate" and o.category == c) for c in POLICY.taxonomy.categories}
    correct = sum(1 for o, t in zip(outcomes, truth, strict=True)
                  if (o.kind == "allow" and t == "safe") or (o.kind in ("block", "review") and o.category == t))
    assert view.kept_correct == correct
    assert view.kept_accuracy == pytest.approx(correct / view.kept)
    harmful = [t != "safe" for t in truth]
    missed = sum(1 for o, h in zip(outcomes, harmful, strict=True) if h and o.kind == "allow")
    assert view.missed_harm_rate == pytest.approx(missed / sum(harmful))


def test_hand_made_rows_get_the_expected_outcomes_and_correctness() -> None:
    def row(**scores: float) -> list[float]:
        values = {label: 0.0 for label in LABELS} | scores
        values["safe"] = 1.0 - sum(v for k, v in values.items() if k != "safe")
        return [values[label] for label in LABELS]

    probs = np.array([
        row(spam=0.95),      # block spam, labelled spam: correct
        row(hate=0.85),      # block hate, labelled safe: wrong
        row(harassment=0.5),  # escalate
        row(),               # allow, labelled violence: a missed harmful post
        row(self_harm=0.8),  # review self_harm, labelled self_harm: correct
    ])
    y = np.array([LABELS.index(label) for label in ("spam", "safe", "harassment", "violence", "self_harm")])
    view = cascade_view(probs, y, LABELS, POLICY)
    assert dict(view.outcomes) == {"allow": 1, "block": 2, "review": 1, "escalate": 1}
    assert view.escalations_by_category["harassment"] == 1
    assert (view.kept_correct, view.acted_correct, view.harmful, view.harmful_allowed) == (2, 2, 4, 1)
    assert view.kept_accuracy == 0.5 and view.action_precision == pytest.approx(2 / 3)


def test_cost_per_1k_follows_the_policy_prices() -> None:
    prices = POLICY.prices
    frontier = 1000 * prices.est_frontier_usd_per_post
    cost = cost_per_1k(0.1, prices)
    assert cost.all_frontier_usd == pytest.approx(frontier)
    assert cost.cascade_usd == pytest.approx(prices.small_model_usd_per_1k_posts + 0.1 * frontier)
    assert cost.saving == pytest.approx(1 - cost.cascade_usd / frontier)


def test_a_model_that_does_not_fit_the_policy_is_refused() -> None:
    scored = synthetic_scores(("safe", "spam"), 10, seed=5)
    with pytest.raises(ModelMismatchError):
        cascade_view(scored.probs, scored.y, scored.labels, POLICY)


def test_data_labels_the_model_does_not_emit_are_a_config_error_naming_them() -> None:
    with pytest.raises(ConfigError, match="'scam'"):
        class_ids(LABELS, [Example("hi", "safe", 1), Example("buy", "scam", 2)])


def test_scored_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        Scored(("a", "b"), np.zeros((3, 2)), np.zeros(2, dtype=np.int64), ("x", "y", "z"))
