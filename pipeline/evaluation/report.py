"""`modcascade eval` as a library: :func:`evaluate_model` scores a model on labelled data and returns an
:class:`EvalReport`; :func:`evaluate_scores` is the pure part, for tests and for callers that already have scores.

``eval.json`` is ``EvalReport.to_json()``; its shape is a contract (the promotion gate reads it), versioned by
``schema_version``. Keys added later are additions; a rename or a change of meaning bumps the version.

    schema_version    1
    model             {name, version, path}
    data              {path, rows, sha256}            sha256 as pipeline.training.data.data_hash
    labels            [label, ...]                    the model's labels in id order
    macro_f1          float                           unweighted mean F1 over all the model's labels
    accuracy          float
    ece               float                           expected calibration error, 15 bins of the top probability
    worst_slice_f1    float                           = worst_slice.lowest_f1.f1
    per_class         {label: {precision, recall, f1, support}}
    worst_slice       {lowest_f1: {label, f1, support}, rarest: {label, f1, support}}
    confusion         {labels, matrix}                matrix[true][predicted], argmax predictions
    reliability       [{lo, hi, count, confidence, accuracy}]   non-empty bins only
    cascade           null, or (with a policy) {policy: {name, version}, posts, outcomes: {allow, block, review,
                      escalate}, escalation_rate, escalations_by_category, kept, kept_accuracy, action_precision,
                      missed_harm_rate, cost_per_1k_posts: {cascade_usd, all_frontier_usd, saving}}
    live_precision    null, or (with --live DIR) {dataset, audits, categories: {category: {audited, confirmed,
                      precision, low, high, frontier_agreed, human_reviewed}}}: the live precision of the small
                      model's final verdicts from the dataset's audit sample (95% Wilson interval; see
                      pipeline.dataset.stats.live_precision). A property of the deployed cascade, not of this model.

Rates whose denominator is zero (nothing kept, no harmful rows) are ``null``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from pipeline.backends.base import LabelMap, ModelInfo
from pipeline.dataset.stats import LiveCategory
from pipeline.evaluation.cascade import CascadeView, cascade_view
from pipeline.evaluation.quality import ReliabilityBin, WorstSlice, confusion, reliability_bins, worst_slice
from pipeline.evaluation.scoring import Scored, ScoringOptions, score_examples
from pipeline.policy import Policy
from pipeline.training.data import Example, data_hash
from pipeline.training.metrics import ClassScores, evaluate

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class ModelSummary:
    name: str
    version: str
    path: str | None = None

    @classmethod
    def from_info(cls, info: ModelInfo) -> ModelSummary:
        return cls(info.name, info.version, str(info.path))


@dataclass(frozen=True, slots=True)
class DataSummary:
    path: str | None
    rows: int
    sha256: str


@dataclass(frozen=True, slots=True)
class LiveView:
    """Live precision per category from a dataset's audit sample (``modcascade eval --live DIR``)."""

    dataset: str
    audits: int
    categories: tuple[LiveCategory, ...]

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "audits": self.audits, "categories": {
            c.category: {"audited": c.precision.n, "confirmed": c.precision.successes,
                         "precision": c.precision.estimate, "low": c.precision.low, "high": c.precision.high,
                         "frontier_agreed": c.frontier_agreed, "human_reviewed": c.reviewed}
            for c in self.categories}}


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Everything `modcascade eval` measured; see the module docstring for the JSON shape."""

    model: ModelSummary
    data: DataSummary
    labels: tuple[str, ...]
    macro_f1: float
    accuracy: float
    ece: float
    per_class: Mapping[str, ClassScores]
    worst_slice: WorstSlice
    confusion: tuple[tuple[int, ...], ...]
    reliability: tuple[ReliabilityBin, ...]
    cascade: CascadeView | None = None
    live: LiveView | None = None

    @property
    def worst_slice_f1(self) -> float:
        """The F1 of the weakest class: the promotion gate's worst-slice number."""
        return self.worst_slice.lowest_f1.f1

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``eval.json`` (see the module docstring)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "model": asdict(self.model),
            "data": asdict(self.data),
            "labels": list(self.labels),
            "macro_f1": self.macro_f1,
            "accuracy": self.accuracy,
            "ece": self.ece,
            "worst_slice_f1": self.worst_slice_f1,
            "per_class": {label: dict(scores) for label, scores in self.per_class.items()},
            "worst_slice": asdict(self.worst_slice),
            "confusion": {"labels": list(self.labels), "matrix": [list(row) for row in self.confusion]},
            "reliability": [asdict(b) for b in self.reliability],
            "cascade": None if self.cascade is None else self.cascade.to_json(),
            "live_precision": None if self.live is None else self.live.to_json(),
        }


def evaluate_scores(scored: Scored, policy: Policy | None, *, model: ModelSummary, data: DataSummary) -> EvalReport:
    """The report for given scores: metrics over the model's labels and, with a policy, the cascade view."""
    metrics = evaluate(scored.probs, scored.y, scored.labels)
    return EvalReport(
        model=model, data=data, labels=scored.labels, macro_f1=metrics["macro_f1"], accuracy=metrics["accuracy"],
        ece=metrics["ece"], per_class=metrics["per_class"], worst_slice=worst_slice(metrics["per_class"]),
        confusion=confusion(scored.probs, scored.y, len(scored.labels)),
        reliability=reliability_bins(scored.probs, scored.y),
        cascade=None if policy is None else cascade_view(scored.probs, scored.y, scored.labels, policy),
    )


def evaluate_model(model_dir: Path, examples: Sequence[Example], policy: Policy | None = None, *,
                   data_path: Path | None = None, options: ScoringOptions | None = None,
                   console: Console | None = None) -> EvalReport:
    """Score ``examples`` with the model at ``model_dir`` (CPU, in process) and evaluate them.

    With a ``policy`` the model's labels must be its taxonomy; that is checked before the model is loaded.
    ``console`` shows a progress bar while scoring.
    """
    if policy is not None:
        LabelMap.for_policy(ModelInfo.from_dir(model_dir).labels, policy)
    info, scored = score_examples(model_dir, examples, options or ScoringOptions(), console)
    data = DataSummary(path=None if data_path is None else str(data_path), rows=len(examples),
                       sha256=data_hash(examples))
    return evaluate_scores(scored, policy, model=ModelSummary.from_info(info), data=data)
