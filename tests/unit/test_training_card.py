"""Model card contents and class weights, without training anything."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline import codec
from pipeline.errors import ConfigError
from pipeline.training.card import CARD_JSON, CARD_MD, model_version, write_card
from pipeline.training.config import TrainConfig, TrainResult, class_weights
from pipeline.training.metrics import ClassScores, Evaluation

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def result(out_dir: Path) -> TrainResult:
    scores = ClassScores(precision=1.0, recall=0.5, f1=2 / 3, support=2)
    validation = Evaluation(macro_f1=0.75, accuracy=0.8, ece=0.1, per_class={"safe": scores, "spam": scores})
    return TrainResult(out_dir=out_dir, config=TrainConfig(base_model=Path("/models/minilm"), epochs=2),
                       labels=("safe", "spam"), class_weights=(0.5, 1.5), data_hash="ab" * 32, train_size=8,
                       val_size=2, epochs_run=2.0, best_epoch=1, validation=validation, seconds=3.21)


def test_model_version() -> None:
    assert model_version("0123456789abcdef", NOW) == "m-20260304050607-01234567"


def test_write_card(tmp_path: Path) -> None:
    card = write_card(result(tmp_path), data_path="data/train.jsonl", now=NOW)
    assert codec.loads((tmp_path / CARD_JSON).read_bytes()) == card
    assert card["version"] == "m-20260304050607-abababab"
    assert card["architecture"] == "BertForSequenceClassification"
    assert card["data"] == {"path": "data/train.jsonl", "sha256": "ab" * 32, "size": 10, "train_size": 8,
                            "val_size": 2}
    assert card["training"]["base_model"] == "/models/minilm"
    assert card["training"]["class_weights"] == {"safe": 0.5, "spam": 1.5}
    assert card["training"]["best_epoch"] == 1
    assert card["validation"]["per_class"]["spam"]["support"] == 2
    markdown = (tmp_path / CARD_MD).read_text(encoding="utf-8")
    assert markdown.startswith("# Model m-20260304050607-abababab\n")
    assert "macro-F1 **0.7500**" in markdown
    assert "| spam | 1.000 | 0.500 | 0.667 | 2 |" in markdown


def test_class_weights_inverse_frequency_mean_one() -> None:
    # counts 3 and 1: inverse 1/3 and 1, scaled to average 1 -> 0.5 and 1.5
    assert class_weights([0, 0, 0, 1], 2) == pytest.approx([0.5, 1.5])
    assert class_weights([0, 1, 2], 3) == pytest.approx([1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"class ids \[2\] have no training examples"):
        class_weights([0, 1], 3)


@pytest.mark.parametrize(("field", "value"), [("epochs", 0), ("val_fraction", 1.0), ("learning_rate", 0.0),
                                              ("num_threads", 0)])
def test_train_config_rejects_bad_values(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})  # type: ignore[arg-type]
