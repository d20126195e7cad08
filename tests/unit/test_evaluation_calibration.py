"""Temperature scaling and isotonic calibration on synthetic scores with a known miscalibration."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation.calibration import IsotonicCalibration, TemperatureScaling, fit_calibrator
from pipeline.training.metrics import expected_calibration_error


def tempered(true_temperature: float, n: int, seed: int, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z / T); the model reports softmax(z): over-confident when T > 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, size=(n, k))
    truth = np.exp(z / true_temperature)
    truth /= truth.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in truth])
    probs = np.exp(z)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, y


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.0, 3.0])
def test_temperature_scaling_recovers_a_known_temperature(true_temperature: float) -> None:
    probs, y = tempered(true_temperature, 20_000, seed=1)
    fitted = TemperatureScaling.fit(probs, y)
    assert fitted.temperature == pytest.approx(true_temperature, rel=0.06)


def test_temperature_scaling_lowers_ece_and_keeps_the_argmax() -> None:
    probs, y = tempered(2.5, 8000, seed=2)
    fit, check = slice(0, 4000), slice(4000, None)
    scaler = fit_calibrator("temperature", probs[fit], y[fit])
    calibrated = scaler.transform(probs[check])
    assert np.allclose(calibrated.sum(axis=1), 1.0)
    assert (calibrated.argmax(axis=1) == probs[check].argmax(axis=1)).all()
    before = expected_calibration_error(probs[check], y[check])
    after = expected_calibration_error(calibrated, y[check])
    assert before > 0.1 and after < before / 3


def test_temperature_scaling_survives_probabilities_that_underflowed_to_zero() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    scaler = TemperatureScaling.fit(probs, np.array([0, 1, 1]))
    assert np.isfinite(scaler.transform(probs)).all()


def test_isotonic_calibration_lowers_ece_on_held_out_rows() -> None:
    rng = np.random.default_rng(3)
    n, k = 8000, 4
    y = rng.integers(0, k, size=n)
    z = rng.normal(0.0, 1.0, size=(n, k))
    z[np.arange(n), y] += 1.5
    probs = np.exp(3.0 * z)  # sharpened: confident far beyond its accuracy
    probs /= probs.sum(axis=1, keepdims=True)
    fit, check = slice(0, 4000), slice(4000, None)
    iso = IsotonicCalibration.fit(probs[fit], y[fit])
    calibrated = iso.transform(probs[check])
    assert np.allclose(calibrated.sum(axis=1), 1.0)
    before = expected_calibration_error(probs[check], y[check])
    after = expected_calibration_error(calibrated, y[check])
    assert before > 0.1 and after < before / 2


def test_isotonic_class_probability_is_monotone_in_the_raw_score() -> None:
    probs, y = tempered(2.0, 4000, seed=4)
    iso = IsotonicCalibration.fit(probs, y)
    grid = np.linspace(0, 1, 101)
    for k in range(probs.shape[1]):
        mapped = iso.class_probability(k, grid)
        assert (np.diff(mapped) >= -1e-12).all() and mapped.min() >= 0 and mapped.max() <= 1


def test_an_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="temperature, isotonic"):
        fit_calibrator("platt", np.eye(2), np.array([0, 1]))  # type: ignore[arg-type]
