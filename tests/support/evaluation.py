"""Synthetic scored data for the evaluation tests: a softmax over noisy logits, so the scores overlap the way a
real model's do and every threshold trade-off is non-trivial."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.evaluation import Scored
from pipeline.policy import Policy, load_policy

REPO = Path(__file__).resolve().parents[2]
DEFAULT_POLICY = REPO / "policies" / "default.yaml"


def default_policy() -> Policy:
    return load_policy(DEFAULT_POLICY)


def policy_labels(policy: Policy) -> tuple[str, ...]:
    """The model label order the tests use: safe first, then the categories (any order works)."""
    return (policy.taxonomy.safe, *policy.taxonomy.categories)


def synthetic_scores(labels: Sequence[str], n: int, *, seed: int, separation: float = 3.0, noise: float = 1.2,
                     priors: Sequence[float] | None = None, tag: str = "") -> Scored:
    """``n`` rows: class ``y`` drawn from ``priors`` (default: half the first class, the rest even), logits
    ``separation * onehot(y) + N(0, noise)``, probabilities their softmax. Texts are unique per ``tag``/seed."""
    rng = np.random.default_rng(seed)
    k = len(labels)
    p = np.asarray(priors if priors is not None else [0.5] + [0.5 / (k - 1)] * (k - 1), dtype=np.float64)
    y = rng.choice(k, size=n, p=p / p.sum())
    logits = rng.normal(0.0, noise, size=(n, k))
    logits[np.arange(n), y] += separation
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return Scored(tuple(labels), probs, y.astype(np.int64), tuple(f"post {tag}{seed}-{i}" for i in range(n)))
