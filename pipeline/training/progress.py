"""One progress bar for a training run, instead of the Trainer's nested bars and printed log dictionaries.

The transformers ``Trainer`` reports through callbacks: with ``disable_tqdm`` it prints every log entry as a
raw dict (``PrinterCallback``), without it it draws a bar per training and per evaluation and prints the same
dicts. :class:`TrainingProgress` replaces both: one rich bar over the optimisation steps, its description
carrying the epoch and the last validation macro-F1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.utils import logging as hf_logging


class TrainingProgress(TrainerCallback):  # type: ignore[misc]  # transformers is not analysed (pyproject)
    """A rich progress bar driven by the Trainer's step, evaluation and end-of-training events."""

    def __init__(self, description: str = "training", console: Console | None = None) -> None:
        self._description = description
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"), console=console, transient=False,
        )
        self._task: Any = None
        self._score = ""

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self._progress.start()
        self._task = self._progress.add_task(self._description, total=state.max_steps, status="")

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        self._progress.update(self._task, completed=state.global_step, status=self._status(state))

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        if metrics and "eval_macro_f1" in metrics:
            self._score = f", val F1 {metrics['eval_macro_f1']:.3f}"
        self._progress.update(self._task, status=self._status(state))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        self._progress.update(self._task, completed=state.max_steps if control.should_training_stop is False
                              else state.global_step, status=self._status(state))
        self._progress.stop()

    def _status(self, state: TrainerState) -> str:
        epoch = f"epoch {state.epoch:.1f}" if state.epoch is not None else ""
        return f"{epoch}{self._score}"


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' notes (e.g. "Some weights ... were newly initialized": expected for a new
    classification head) and its own tqdm bars ("Loading weights", "Writing model shards") for the duration;
    errors still show."""
    previous = hf_logging.get_verbosity()
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars_were_on:
            hf_logging.enable_progress_bar()
