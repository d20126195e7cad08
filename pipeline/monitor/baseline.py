"""The reference a window is compared with: the trailing windows, or a baseline file (pure).

Baseline file (``monitor.reference: baseline``, ``monitor.baseline: path``), JSON::

    {
      "schema_version": 1,
      "model": "modcascade-minilm", "model_version": "m-20261124",   # optional: what it was measured on
      "score_bins": 10,                     # must equal the policy's monitor.score_bins
      "posts": 4000,                        # posts it was measured on
      "escalation_rate": 0.08,              # share of posts sent to adjudication
      "block_rates": {"spam": 0.02, ...},   # share of final verdicts blocked, per category (missing: 0)
      "score_histograms": {"spam": [3120, 410, ...], ...}   # per category, one count (or share) per bin
    }

:func:`baseline_from_scores` builds one from the small model's scores on a sample (e.g. an evaluation set) under
a policy; :func:`save_baseline` writes it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline import codec
from pipeline.errors import ConfigError, DecodeError
from pipeline.monitor.stats import Summary, ratio, shares
from pipeline.monitor.tally import score_bin
from pipeline.policy import Policy, decide

BASELINE_VERSION = 1


class Baseline(BaseModel):
    """A baseline file (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(default=BASELINE_VERSION, ge=1, le=BASELINE_VERSION)
    model: str | None = None
    model_version: str | None = None
    score_bins: int = Field(ge=2, le=100)
    posts: int = Field(ge=1)
    escalation_rate: float = Field(ge=0, le=1)
    block_rates: dict[str, float] = Field(default_factory=dict)
    score_histograms: dict[str, tuple[float, ...]]


@dataclass(frozen=True)
class Reference:
    """What :mod:`pipeline.monitor.rules` compares a window with. Rates are smoothed by one record (an unseen
    event in the reference is not a division by zero), histograms are shares."""

    posts: int
    final: int
    escalation_rate: float
    block_rates: dict[str, float]
    histograms: dict[str, list[float]]

    @classmethod
    def of_summary(cls, s: Summary) -> Reference:
        return cls(posts=s.posts, final=s.final, escalation_rate=(s.escalated + 1) / (s.posts + 1),
                   block_rates={c: (n + 1) / (s.final + 1) for c, n in s.blocks.items()},
                   histograms={c: shares(h) for c, h in s.histograms.items()})

    @classmethod
    def of_baseline(cls, b: Baseline, categories: Sequence[str]) -> Reference:
        smoothing = 1 / (b.posts + 1)
        return cls(posts=b.posts, final=b.posts, escalation_rate=max(b.escalation_rate, smoothing),
                   block_rates={c: max(b.block_rates.get(c, 0.0), smoothing) for c in categories},
                   histograms={c: shares(h) for c, h in b.score_histograms.items()})


def baseline_from_scores(scores: Iterable[Mapping[str, float]], policy: Policy, *, bins: int | None = None,
                         model: str | None = None, model_version: str | None = None) -> Baseline:
    """The baseline of a sample: each post's scores decided under ``policy`` (escalation and block rates, as if
    every escalation were settled as allowed) and binned like the monitor bins them."""
    bins = bins or policy.monitor.score_bins
    categories = policy.taxonomy.categories
    histograms = {c: [0] * bins for c in categories}
    blocks = dict.fromkeys(categories, 0)
    posts = escalated = 0
    for row in scores:
        posts += 1
        outcome = decide(row, policy)
        if outcome.kind == "escalate":
            escalated += 1
        elif outcome.kind == "block" and outcome.category:
            blocks[outcome.category] += 1
        for c in categories:
            if c in row:
                histograms[c][score_bin(row[c], bins)] += 1
    if not posts:
        raise ConfigError("a baseline needs at least one post's scores")
    return Baseline(model=model, model_version=model_version, score_bins=bins, posts=posts,
                    escalation_rate=ratio(escalated, posts),
                    block_rates={c: ratio(n, posts) for c, n in blocks.items()},
                    score_histograms={c: tuple(h) for c, h in histograms.items()})


def save_baseline(baseline: Baseline, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(codec.dumps_pretty(baseline.model_dump(mode="json")))
    return out


def load_baseline(path: str | os.PathLike[str], *, bins: int) -> Baseline:
    """Read a baseline file; :class:`ConfigError` names the file and the fix when it is missing or invalid, or
    when its bins differ from the policy's ``monitor.score_bins``."""
    file = Path(path)
    try:
        baseline = Baseline.model_validate(codec.loads(file.read_bytes()))
    except FileNotFoundError:
        raise ConfigError(f"baseline file {file} does not exist: write one (docs/monitor.md) or set the policy's "
                          "monitor.reference to trailing") from None
    except (ValidationError, DecodeError) as exc:
        raise ConfigError(f"baseline file {file} is invalid ({' '.join(str(exc).split())[:300]}): see the format "
                          "in docs/monitor.md") from None
    if baseline.score_bins != bins:
        raise ConfigError(f"baseline file {file} has {baseline.score_bins} score bins but the policy's "
                          f"monitor.score_bins is {bins}: make them equal")
    wrong = [c for c, h in baseline.score_histograms.items() if len(h) != bins]
    if wrong:
        raise ConfigError(f"baseline file {file}: histograms of {', '.join(wrong)} do not have {bins} bins")
    return baseline
