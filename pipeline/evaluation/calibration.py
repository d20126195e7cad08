"""Post-hoc calibration of a model's probabilities: temperature scaling or per-class isotonic regression. Pure.

Why the stream never sees calibrated scores: the workers compare the model's raw softmax outputs with the
policy's bands, and every band `modcascade calibrate` proposes is a raw-score threshold. Calibration here
answers "how far are the raw scores from being probabilities" (ECE before and after, the reliability diagram).
The one-vs-rest isotonic map of a category's raw score (:func:`one_vs_rest_isotonic`) is also how the default
band rule reads "the probability that a post with this score is the category"; being monotone, it turns a
probability bar back into a raw-score threshold exactly.

- Temperature scaling: one scalar ``T`` for the whole softmax, ``softmax(log p / T)``, fitted by minimising the
  negative log-likelihood. It keeps the argmax (so accuracy and F1 are unchanged) and is hard to overfit.
  Log-probabilities are logits up to a per-row constant, which the softmax ignores, so the backend's
  probabilities are enough. The NLL is convex in ``1 / T``, so a golden-section search over ``log T`` finds
  the minimum without scipy.
- Isotonic: per class, a monotone map from the raw probability to the observed frequency of that class
  (one-vs-rest), then rows renormalised to sum to 1. Flexible, needs more data, can change the argmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from sklearn.isotonic import IsotonicRegression

Method = Literal["temperature", "isotonic"]
METHODS: tuple[Method, ...] = ("temperature", "isotonic")

_MIN_PROB = 1e-12  # float32 softmax underflows to 0; log(0) would make every temperature infinitely bad
_LOG_T_RANGE = (math.log(0.05), math.log(20.0))
_GOLDEN = (math.sqrt(5) - 1) / 2


class Calibrator(Protocol):
    """What both methods offer: calibrated probabilities, and what was fitted."""

    @property
    def method(self) -> Method: ...

    def transform(self, probs: NDArray[Any]) -> NDArray[np.float64]:
        """Calibrated probabilities for raw ones (rows sum to 1)."""
        ...

    def params(self) -> dict[str, Any]:
        """What was fitted, as plain data for reports."""
        ...


@dataclass(frozen=True, slots=True)
class TemperatureScaling:
    """``softmax(log p / temperature)``; a temperature above 1 softens over-confident scores."""

    temperature: float
    method: Method = "temperature"

    @classmethod
    def fit(cls, probs: NDArray[Any], y_true: NDArray[Any]) -> TemperatureScaling:
        """The temperature in [0.05, 20] that minimises the mean negative log-likelihood of ``y_true``."""
        logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), _MIN_PROB, 1.0))
        y = np.asarray(y_true)
        lo, hi = _LOG_T_RANGE
        a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
        fa, fb = _nll(logits, y, math.exp(a)), _nll(logits, y, math.exp(b))
        while hi - lo > 1e-5:
            if fa < fb:
                hi, b, fb = b, a, fa
                a = hi - _GOLDEN * (hi - lo)
                fa = _nll(logits, y, math.exp(a))
            else:
                lo, a, fa = a, b, fb
                b = lo + _GOLDEN * (hi - lo)
                fb = _nll(logits, y, math.exp(b))
        return cls(math.exp((lo + hi) / 2))

    def transform(self, probs: NDArray[Any]) -> NDArray[np.float64]:
        return _softmax(np.log(np.clip(np.asarray(probs, dtype=np.float64), _MIN_PROB, 1.0)) / self.temperature)

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature}


@dataclass(frozen=True, slots=True)
class IsotonicCalibration:
    """One increasing map per class (one-vs-rest), then renormalised rows.

    A row that every map sends to 0 (scores below anything seen in fitting) keeps its raw probabilities.
    """

    maps: tuple[IsotonicRegression, ...]
    method: Method = "isotonic"

    @classmethod
    def fit(cls, probs: NDArray[Any], y_true: NDArray[Any]) -> IsotonicCalibration:
        p = np.asarray(probs, dtype=np.float64)
        y = np.asarray(y_true)
        return cls(tuple(one_vs_rest_isotonic(p[:, k], y == k) for k in range(p.shape[1])))

    def class_probability(self, k: int, raw: NDArray[Any]) -> NDArray[np.float64]:
        """Class ``k``'s fitted frequency at raw scores ``raw``, before renormalisation: what a raw band edge
        means as a probability of the category."""
        return np.asarray(self.maps[k].predict(np.asarray(raw, dtype=np.float64)), dtype=np.float64)

    def transform(self, probs: NDArray[Any]) -> NDArray[np.float64]:
        p = np.asarray(probs, dtype=np.float64)
        mapped = np.column_stack([self.class_probability(k, p[:, k]) for k in range(p.shape[1])])
        sums = mapped.sum(axis=1, keepdims=True)
        return np.where(sums > 0, mapped / np.where(sums > 0, sums, 1.0), p)

    def params(self) -> dict[str, Any]:
        return {"breakpoints": [len(m.X_thresholds_) for m in self.maps]}


def one_vs_rest_isotonic(scores: NDArray[Any], positive: NDArray[np.bool_]) -> IsotonicRegression:
    """The increasing map from one class's raw score to how often rows with that score carry the class."""
    return IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(
        np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=np.float64))


def fit_calibrator(method: Method, probs: NDArray[Any], y_true: NDArray[Any]) -> Calibrator:
    """Fit ``method`` on raw probabilities and true class ids."""
    if method == "temperature":
        return TemperatureScaling.fit(probs, y_true)
    if method == "isotonic":
        return IsotonicCalibration.fit(probs, y_true)
    raise ValueError(f"unknown calibration method {method!r}: use one of {', '.join(METHODS)}")


def _softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    shifted = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=np.float64)


def _nll(logits: NDArray[np.float64], y: NDArray[Any], temperature: float) -> float:
    z = logits / temperature
    top = z.max(axis=1)
    log_norm = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
    return float((log_norm - z[np.arange(len(y)), y]).mean())
