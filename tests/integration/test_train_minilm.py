"""Fine-tune the packaged MiniLM on a slice of the seed corpus (CPU, a few seconds) and check what it writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForSequenceClassification

from pipeline import codec
from pipeline.training.card import CARD_JSON, CARD_MD, write_card
from pipeline.training.data import Example, load_examples
from pipeline.training.trainer import ARCHITECTURE, TrainConfig, TrainResult, train

pytestmark = pytest.mark.model

SEED_CORPUS = Path(__file__).parents[2] / "pipeline" / "data" / "seed_corpus.jsonl"
LABELS = ("harassment", "safe", "spam")
CONFIG = TrainConfig(epochs=1, max_length=32, batch_size=16, num_threads=2, seed=13)


@pytest.fixture(scope="module")
def slice_300() -> list[Example]:
    return [e for e in load_examples(SEED_CORPUS) if e.label in LABELS][:300]


@pytest.fixture(scope="module")
def trained(slice_300: list[Example], tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, dict[str, Any]]:
    result = train(CONFIG, slice_300, tmp_path_factory.mktemp("model"), progress=False)
    card = write_card(result, data_path=SEED_CORPUS)
    return result, card


def test_model_dir_loads_with_labels(trained: tuple[TrainResult, dict[str, Any]]) -> None:
    result, _ = trained
    model = AutoModelForSequenceClassification.from_pretrained(result.out_dir)
    assert model.config.id2label == dict(enumerate(LABELS))
    assert model.config.label2id == {name: i for i, name in enumerate(LABELS)}
    assert model.config.architectures == [ARCHITECTURE]
    assert (result.out_dir / "tokenizer.json").is_file()
    assert not (result.out_dir / ".checkpoints").exists()
    assert not (result.out_dir / "training_args.bin").exists()


def test_model_card(trained: tuple[TrainResult, dict[str, Any]]) -> None:
    result, card = trained
    on_disk = codec.loads((result.out_dir / CARD_JSON).read_bytes())
    assert on_disk == card
    validation = on_disk["validation"]
    assert 0.0 <= validation["macro_f1"] <= 1.0
    assert 0.0 <= validation["ece"] <= 1.0
    assert set(validation["per_class"]) == set(LABELS)
    assert on_disk["labels"] == list(LABELS)
    assert on_disk["data"]["size"] == 300
    assert on_disk["data"]["train_size"] + on_disk["data"]["val_size"] == 300
    assert on_disk["version"].endswith("-" + result.data_hash[:8])
    assert on_disk["training"]["max_length"] == 32
    assert "macro-F1" in (result.out_dir / CARD_MD).read_text(encoding="utf-8")


def test_same_seed_same_metrics(trained: tuple[TrainResult, dict[str, Any]], slice_300: list[Example],
                                tmp_path: Path) -> None:
    first, _ = trained
    again = train(CONFIG, slice_300, tmp_path / "again", progress=False)
    assert again.validation == first.validation
