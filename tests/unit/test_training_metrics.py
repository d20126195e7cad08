"""Validation metrics on examples small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.training.metrics import evaluate, expected_calibration_error, macro_f1


def test_macro_f1_hand_computed() -> None:
    # class 0: P=1/2 R=1/2 F1=0.5; class 1: P=2/3 R=1 F1=0.8; class 2: never right, F1=0
    y_true, y_pred = [0, 0, 1, 1, 2], [0, 1, 1, 1, 0]
    assert macro_f1(y_true, y_pred, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_macro_f1_counts_absent_classes_as_zero() -> None:
    assert macro_f1([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 4) == pytest.approx(1.3 / 4)


def test_ece_one_example_per_bin() -> None:
    # confidences 0.9, 0.75, 0.7, 0.62 fall in bins 13, 11, 10, 9 of 15; correctness 1, 0, 1, 1
    probs = np.array([[0.9, 0.1], [0.75, 0.25], [0.3, 0.7], [0.38, 0.62]])
    y = [0, 1, 1, 1]
    expected = (abs(1 - 0.9) + abs(0 - 0.75) + abs(1 - 0.7) + abs(1 - 0.62)) / 4  # 0.3825
    assert expected_calibration_error(probs, y) == pytest.approx(expected)
    assert expected == pytest.approx(0.3825)


def test_ece_averages_within_a_bin() -> None:
    # both confidences (0.9, 0.92) land in bin (0.8667, 0.9333]: accuracy 0.5, mean confidence 0.91
    probs = np.array([[0.9, 0.1], [0.92, 0.08]])
    assert expected_calibration_error(probs, [0, 1]) == pytest.approx(0.41)


def test_ece_is_zero_when_confident_and_right() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(probs, [0, 1]) == 0.0


def test_ece_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="matching y_true"):
        expected_calibration_error(np.array([[0.5, 0.5]]), [0, 1])


def test_evaluate_per_class_and_summary() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    result = evaluate(probs, [0, 1, 1, 1], ["safe", "spam"])
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["per_class"]["safe"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert result["per_class"]["spam"]["recall"] == pytest.approx(2 / 3)
    assert result["per_class"]["spam"]["support"] == 3
    assert result["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert 0.0 <= result["ece"] <= 1.0
