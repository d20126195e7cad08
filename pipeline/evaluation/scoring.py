"""Score labelled examples with a model directory: the only part of evaluation that loads a model.

Everything downstream works on a :class:`Scored` set (a probability matrix, the true class ids and the texts),
so the metrics, the cascade view and the calibration are pure functions that tests drive with synthetic
numbers. Scoring uses the in-process ``transformers`` backend: no model server is needed, and it gives the
same scores as the vLLM backends for the same text (see :mod:`pipeline.backends.base`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.backends.base import DEFAULT_MAX_LENGTH, ModelInfo
from pipeline.errors import ConfigError
from pipeline.training.data import Example


@dataclass(frozen=True, slots=True, eq=False)
class Scored:
    """Model probabilities for labelled texts: ``probs[i, j]`` is the probability of ``labels[j]`` for text ``i``,
    whose true class is ``labels[y[i]]``. Rows sum to 1 (softmax outputs). Compared by identity (numpy arrays
    have no single truth value)."""

    labels: tuple[str, ...]
    probs: NDArray[np.float64]
    y: NDArray[np.int64]
    texts: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.texts)
        if self.probs.shape != (n, len(self.labels)) or self.y.shape != (n,):
            raise ValueError(f"probs {self.probs.shape} and y {self.y.shape} do not fit {n} texts and "
                             f"{len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    def one_vs_rest(self, label: str) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """One label's scores, and which rows carry that label."""
        k = self.labels.index(label)
        return self.probs[:, k], self.y == k

    def subset(self, mask: NDArray[np.bool_]) -> Scored:
        """The rows where ``mask`` is true, in order."""
        return Scored(self.labels, self.probs[mask], self.y[mask], tuple(t for t, keep in zip(self.texts, mask,
                                                                                                strict=True) if keep))

    @classmethod
    def from_examples(cls, labels: Sequence[str], probs: NDArray[Any], examples: Sequence[Example]) -> Scored:
        """Pair probabilities (model label order) with examples; a label the model does not emit is an error."""
        return cls(tuple(labels), np.asarray(probs, dtype=np.float64).reshape(len(examples), len(labels)),
                   class_ids(labels, examples), tuple(e.text for e in examples))


def class_ids(labels: Sequence[str], examples: Sequence[Example]) -> NDArray[np.int64]:
    """Each example's label as an index into ``labels``; a label the model does not emit is a ConfigError."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({e.label for e in examples} - set(index))
    if unknown:
        raise ConfigError(f"data labels {unknown} are not labels of the model [{', '.join(labels)}]: evaluate on "
                          "data labelled with the model's taxonomy (or relabel those rows)")
    return np.array([index[e.label] for e in examples], dtype=np.int64)


@dataclass(frozen=True, slots=True)
class ScoringOptions:
    """How to run the model: tokens per text (as the stream: ``MODCASCADE_MODEL_MAX_LENGTH``), texts per forward
    pass, torch threads (``None`` leaves torch's default)."""

    max_length: int = DEFAULT_MAX_LENGTH
    batch_size: int = 64
    threads: int | None = None


def score_examples(model_dir: Path, examples: Sequence[Example], options: ScoringOptions = ScoringOptions(),
                   console: Console | None = None) -> tuple[ModelInfo, Scored]:
    """Load the model at ``model_dir`` on CPU and score every example, with a progress bar on ``console``."""
    info = ModelInfo.from_dir(model_dir)
    if not examples:
        raise ConfigError("no examples to score: the data file has no rows")
    class_ids(info.labels, examples)  # fail on foreign labels before the model is loaded
    rows = asyncio.run(_score([e.text for e in examples], model_dir, options, console))
    by_label = np.array([[row[label] for label in info.labels] for row in rows], dtype=np.float64)
    return info, Scored.from_examples(info.labels, by_label, examples)


async def _score(texts: list[str], model_dir: Path, options: ScoringOptions,
                 console: Console | None) -> list[dict[str, float]]:
    from pipeline.backends.transformers_backend import TransformersClassifier  # imports torch

    classifier = TransformersClassifier(model_dir, max_length=options.max_length, batch_size=options.batch_size,
                                        threads=options.threads)
    rows: list[dict[str, float]] = []
    progress = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console, disable=console is None, transient=True)
    try:
        with progress:
            task = progress.add_task("scoring", total=len(texts))
            for start in range(0, len(texts), options.batch_size):
                batch = texts[start:start + options.batch_size]
                rows.extend(await classifier.classify(batch))
                progress.advance(task, len(batch))
    finally:
        await classifier.aclose()
    return rows
