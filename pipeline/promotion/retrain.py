"""`modcascade retrain`: the learning loop in one command, safe to run on a schedule.

    1. export   the retraining dataset → train / val / test splits by post id; the golden set pinned (created
                once from the test split if the file does not exist yet) and in no split
    2. train    the Classifier issue's trainer on train + val (it holds out its own validation share)
    3. eval     the candidate on the test split → eval.json / eval.md / plots (with the policy's cascade view)
    4. gate     candidate vs current on the golden set → promote, or refuse and change nothing

Everything of one run lands in ``<work>/<UTC timestamp>/``. A lock file in the models folder makes a second
run started while one is in progress exit at once instead of racing it.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from pipeline import codec
from pipeline.dataset.command import open_store
from pipeline.dataset.export import ExportOptions, export_dataset
from pipeline.errors import ConfigError
from pipeline.evaluation.report import evaluate_model
from pipeline.evaluation.scoring import ScoringOptions
from pipeline.policy import load_policy
from pipeline.promotion.command import PromoteOutcome, run_promote
from pipeline.settings import Settings
from pipeline.training.config import TrainConfig
from pipeline.training.data import check_labels, load_examples

LOCK = ".retrain.lock"


@dataclass(frozen=True, slots=True)
class RetrainOptions:
    golden: Path
    work: Path = Path("runs/retrain")
    dataset: Path | None = None
    """Default: MODCASCADE_FEEDBACK_DATASET_DIR."""
    train: TrainConfig = field(default_factory=TrainConfig)
    min_examples: int = 50
    """Fewer labelled posts than this: nothing to learn from yet, stop before training."""


def run_retrain(console: Console, settings: Settings, options: RetrainOptions) -> PromoteOutcome:
    with _exclusive(settings.promote.models_dir / LOCK):
        run_dir = options.work / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        policy = load_policy(settings.policy_path)
        folder = options.dataset or settings.feedback.dataset_dir

        console.rule("1. export")
        report = export_dataset(open_store(folder).current(), ExportOptions(
            out=run_dir / "data", golden=options.golden, source=str(folder)))
        console.print(f"{folder} → {report.out}: " + ", ".join(f"{k} {v:,}" for k, v in report.rows.items())
                      + (f" (golden set created at {options.golden})" if report.golden_created else ""))
        examples = [*load_examples(report.out / "train.jsonl"), *load_examples(report.out / "val.jsonl")]
        if len(examples) < options.min_examples:
            raise ConfigError(f"{folder}: only {len(examples)} labelled posts to train on (need "
                              f"{options.min_examples}): let the feedback worker collect more labels first")
        check_labels(examples, min_per_label=options.train.min_per_label, taxonomy=policy.taxonomy,
                     source=str(report.out / "train.jsonl"))

        console.rule("2. train")
        from pipeline.training.card import write_card
        from pipeline.training.trainer import train

        candidate = run_dir / "candidate"
        config = replace(options.train, max_length=settings.model.max_length)
        result = train(config, examples, candidate)
        write_card(result, data_path=report.out / "train.jsonl", data_size=len(examples))
        console.print(f"candidate {candidate}: validation macro-F1 {result.validation['macro_f1']:.4f} "
                      f"({result.seconds:,.0f} s)")

        console.rule("3. eval on the test split")
        scoring = ScoringOptions(max_length=settings.model.max_length)
        test = load_examples(report.out / "test.jsonl")
        evaluation = evaluate_model(candidate, test, policy, data_path=report.out / "test.jsonl", options=scoring,
                                    console=console)
        (run_dir / "eval.json").write_bytes(codec.dumps_pretty(evaluation.to_json()))
        console.print(f"test split ({len(test):,} posts): macro-F1 {evaluation.macro_f1:.4f}, ECE "
                      f"{evaluation.ece:.4f}; {run_dir / 'eval.json'}")

        console.rule("4. gate and promote")
        golden = report.out / "golden.jsonl"
        return run_promote(console, settings, candidate=candidate, current=None, golden=golden, scoring=scoring)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another retrain holds {path}: wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
