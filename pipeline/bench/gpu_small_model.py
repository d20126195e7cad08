"""The small-model stage at production scale on one GPU: posts/s, MFU and peak memory of a Qwen2.5-7B-shaped classifier.

    python -m pipeline.bench.gpu_small_model --out DIR            # on the GPU machine (about 2-4 minutes)
    python -m pipeline.bench.gpu_small_model --tiny --out DIR     # the same on CPU with a tiny model (seconds)
    python -m pipeline.bench.gpu_small_model --publish DIR        # here: DIR's markdown into BENCHMARKS.md

What runs: a randomly initialised ``Qwen2ForSequenceClassification`` with Qwen2.5-7B's shapes (hidden 3584, 28
layers, 28 query and 4 key/value heads, MLP 18944, vocabulary 152064) and 7 labels, built from a config in code
(no download; throughput does not depend on trained weights) directly on the GPU in bfloat16, scored through
:class:`pipeline.torch_batch.BatchScorer`, the code the ``transformers`` backend runs (pad, forward, softmax).
Inputs are synthetic token ids (no tokenizer is available offline) with a seeded post-length distribution:
log-normal around 48 tokens, clipped to 16..``--max-length`` (256). Each batch size is measured twice: batches in
arrival order (the backend's default) and by token budget (shortest first, at most ``batch size`` posts and
``batch size x --tokens-per-post`` padded tokens per batch).

MFU: model FLOPs on the real (unpadded) tokens per second over the card's dense bf16 peak. Forward FLOPs of a
post of ``s`` tokens = 2 x (parameters without the embedding table) x s + 4 x layers x (heads x head dim) x s^2
(QK^T and AV over the full s x s square, not halved for the causal mask). Padding is work the card does but the
model does not need, so it lowers MFU; ``padded_tflops`` counts it too. The peak is looked up by card name
(:data:`PEAK_BF16_TFLOPS`, printed with the results) or given with ``--peak-tflops``.

Imports only the standard library, torch, transformers and two torch-free or torch-only modules of ours
(:mod:`pipeline.torch_batch`, :mod:`pipeline.bench.report`): the GPU machine has none of the other dependencies.
Results are written after every measurement, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import torch

from pipeline.bench.report import machine, replace_section, today
from pipeline.torch_batch import BatchScorer, check_device, plan_batches, torch_dtype

JSON_NAME: Final = "gpu_small_model.json"
MARKDOWN_NAME: Final = "gpu_small_model.md"
SECTION: Final = "gpu-small-model"
BENCHMARKS: Final = Path(__file__).resolve().parents[2] / "BENCHMARKS.md"

PEAK_BF16_TFLOPS: Final[tuple[tuple[tuple[str, ...], float], ...]] = (
    # (every word the card name must contain, dense bf16 TFLOPS without sparsity), first match wins
    (("H100", "NVL"), 835.0),
    (("H200", "NVL"), 835.0),
    (("H100", "PCIE"), 756.0),
    (("H100",), 989.4),   # SXM5 (torch names it "NVIDIA H100 80GB HBM3")
    (("H200",), 989.4),   # SXM (GH200 too)
    (("A100",), 312.0),
    (("L40S",), 362.0),
)


@dataclass(frozen=True)
class Shape:
    """The model's shape: what the config is built from and what the FLOPs count needs."""

    name: str
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    labels: int = 7

    @property
    def pad_token_id(self) -> int:
        """Qwen2.5's ``<|endoftext|>`` for the full vocabulary; the last id for a tiny one. Never drawn as input."""
        return 151643 if self.vocab == 152064 else self.vocab - 1


QWEN25_7B: Final = Shape("Qwen2.5-7B-shaped", vocab=152064, hidden=3584, layers=28, heads=28, kv_heads=4,
                         intermediate=18944)
TINY: Final = Shape("tiny Qwen2", vocab=1024, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128)


@dataclass
class Row:
    """One measurement: a batch size and a batching mode over the same posts."""

    mode: str
    batch_size: int
    max_batch_tokens: int | None
    posts: int = 0
    batches: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    seconds: float = 0.0
    posts_per_s: float = 0.0
    real_tokens_per_s: float = 0.0
    model_tflops: float = 0.0
    padded_tflops: float = 0.0
    mfu: float | None = None
    peak_memory_gib: float | None = None
    error: str | None = None


@dataclass
class Result:
    card: str
    device: str
    dtype: str
    model: str
    shape: dict[str, Any]
    params: int
    params_without_embedding: int
    attention: str
    peak_tflops: float | None
    peak_source: str
    lengths: dict[str, float]
    versions: dict[str, str]
    date: str
    init_s: float = 0.0
    weights_memory_gib: float | None = None
    rows: list[Row] = field(default_factory=list)
    wall_s: float = 0.0
    note: str = ""


def peak_tflops(card: str) -> tuple[float | None, str]:
    """The card's dense bf16 peak and where the figure came from; ``None`` when the card is not in the table."""
    words = card.upper()
    for needed, tflops in PEAK_BF16_TFLOPS:
        if all(word in words for word in needed):
            return tflops, f"dense bf16 peak of {' '.join(needed)} by card name (datasheet, no sparsity)"
    return None, f"card {card!r} not in the peak table: MFU not computed (give --peak-tflops)"


def forward_flops(params_without_embedding: int, shape: Shape, lengths: Sequence[int]) -> float:
    """Forward FLOPs for posts of ``lengths`` tokens: matmuls of every weight plus the attention square."""
    head_dim = shape.hidden // shape.heads
    return float(sum(2 * params_without_embedding * s + 4 * shape.layers * shape.heads * head_dim * s * s
                     for s in lengths))


def post_lengths(count: int, max_length: int, seed: int) -> list[int]:
    """Token lengths like short social posts: log-normal (median 48, sigma 0.7), clipped to 16..max_length."""
    rng = random.Random(seed)
    low = min(16, max_length)
    return [min(max_length, max(low, round(rng.lognormvariate(math.log(48), 0.7)))) for _ in range(count)]


def token_rows(lengths: Sequence[int], shape: Shape, seed: int) -> list[list[int]]:
    """Random token ids (below the pad id, so none is padding) of the given lengths."""
    rng = random.Random(seed + 1)
    top = min(shape.pad_token_id, shape.vocab) - 1
    return [[rng.randint(0, top) for _ in range(n)] for n in lengths]


def build_model(shape: Shape, device: torch.device, dtype: torch.dtype) -> Any:
    """The classifier with random weights, created on ``device`` in ``dtype`` (no CPU copy, no float32 pass)."""
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    config = Qwen2Config(
        vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
        max_position_embeddings=32768, rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
        num_labels=shape.labels, pad_token_id=shape.pad_token_id, use_cache=False, attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = Qwen2ForSequenceClassification(config)
    finally:
        torch.set_default_dtype(before)
    first = next(model.parameters())
    if first.dtype != dtype or first.device.type != device.type:
        raise RuntimeError(f"the model was built as {first.dtype} on {first.device}, not {dtype} on {device}")
    return model.eval()


def card_name(device: torch.device) -> str:
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return "CPU: " + machine().removesuffix(", no GPU")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(scorer: BatchScorer, rows: list[list[int]], row: Row, result: Result, shape: Shape,
            device: torch.device, warmup: int) -> None:
    """Fill ``row``: one timed pass of ``scorer.score`` over all ``rows`` after ``warmup`` untimed posts."""
    scorer.batch_size, scorer.max_batch_tokens = row.batch_size, row.max_batch_tokens
    scorer.score(rows[:warmup])  # kernels chosen, allocator warmed for these shapes
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    probs = scorer.score(rows)
    synchronize(device)
    seconds = time.perf_counter() - started
    if len(probs) != len(rows) or any(len(p) != shape.labels or abs(sum(p) - 1) > 1e-2 for p in probs):
        raise RuntimeError("the scorer returned malformed probabilities")
    lengths = [len(r) for r in rows]
    plan = plan_batches(lengths, row.batch_size, row.max_batch_tokens)
    padded = [max(lengths[i] for i in batch) for batch in plan for _ in batch]
    real_flops = forward_flops(result.params_without_embedding, shape, lengths)
    padded_flops = forward_flops(result.params_without_embedding, shape, padded)
    row.posts, row.batches, row.seconds = len(rows), len(plan), seconds
    row.real_tokens, row.padded_tokens = sum(lengths), sum(padded)
    row.posts_per_s = len(rows) / seconds
    row.real_tokens_per_s = row.real_tokens / seconds
    row.model_tflops = real_flops / seconds / 1e12
    row.padded_tflops = padded_flops / seconds / 1e12
    row.mfu = row.model_tflops / result.peak_tflops if result.peak_tflops else None
    if device.type == "cuda":
        row.peak_memory_gib = torch.cuda.max_memory_allocated(device) / 2**30


def run(args: argparse.Namespace) -> Result:
    wall = time.perf_counter()
    shape = TINY if args.tiny else QWEN25_7B
    device = check_device(args.device or ("cpu" if args.tiny else "cuda"))
    dtype = torch_dtype(args.dtype)
    card = card_name(device)
    peak, source = (args.peak_tflops, "given with --peak-tflops") if args.peak_tflops else peak_tflops(card)
    if device.type == "cpu" and not args.peak_tflops:
        peak, source = None, "CPU: no peak assumed, MFU not computed"
    lengths = post_lengths(args.posts, args.max_length, args.seed)
    rows = token_rows(lengths, shape, args.seed)
    import transformers

    transformers.Qwen2ForSequenceClassification  # noqa: B018  (load the lazy module now, not in the timed build)
    started = time.perf_counter()
    model = build_model(shape, device, dtype)
    synchronize(device)
    init_s = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    ordered = sorted(lengths)
    result = Result(
        card=card, device=str(device), dtype=args.dtype, model=shape.name, shape=asdict(shape), params=params,
        params_without_embedding=params - embedding, attention=str(model.config._attn_implementation),
        peak_tflops=peak, peak_source=source,
        lengths={"posts": len(lengths), "mean": statistics.fmean(lengths), "p50": ordered[len(ordered) // 2],
                 "p90": ordered[int(len(ordered) * 0.9)], "min": ordered[0], "max": ordered[-1]},
        versions={"torch": torch.__version__, "transformers": transformers.__version__,
                  "cuda": str(torch.version.cuda), "python": platform.python_version()},
        date=today(), init_s=init_s,
        note="Tiny model on CPU: a test of the script, not a production figure." if args.tiny else "",
        weights_memory_gib=torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    )
    print(f"{card}: {shape.name}, {count(params)} parameters ({count(result.params_without_embedding)} without the "
          f"embedding), {args.dtype}, attention {result.attention}, built in {init_s:.1f} s", flush=True)
    print(f"peak assumed: {peak} TFLOPS ({source})", flush=True)
    scorer = BatchScorer(model, pad_token_id=shape.pad_token_id, device=str(device))
    for batch_size in args.batch_sizes:
        for mode, budget in (("token budget", batch_size * args.tokens_per_post), ("arrival order", None)):
            row = Row(mode=mode, batch_size=batch_size, max_batch_tokens=budget)
            result.rows.append(row)
            if time.perf_counter() - wall > args.time_budget_s:
                row.error = f"skipped: past the time budget of {args.time_budget_s:.0f} s"
            else:
                try:
                    measure(scorer, rows, row, result, shape, device, warmup=min(len(rows), 2 * batch_size))
                except torch.cuda.OutOfMemoryError as exc:
                    row.error = f"out of memory: {str(exc).splitlines()[0]}"
                    torch.cuda.empty_cache()
            print(line(row), flush=True)
            result.wall_s = time.perf_counter() - wall
            write(result, args.out)
    return result


def count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 10**8 else f"{n:,}"


def line(row: Row) -> str:
    if row.error:
        return f"  {row.mode:>13} batch {row.batch_size:>4}: {row.error}"
    mfu = f"MFU {row.mfu:.1%}" if row.mfu is not None else "MFU n/a"
    memory = f", peak {row.peak_memory_gib:.1f} GiB" if row.peak_memory_gib is not None else ""
    return (f"  {row.mode:>13} batch {row.batch_size:>4}: {row.posts_per_s:,.0f} posts/s, "
            f"{row.real_tokens_per_s:,.0f} tokens/s, {row.model_tflops:.1f} TFLOPS, {mfu}, "
            f"padding {1 - row.real_tokens / row.padded_tokens:.0%}{memory}")


def markdown(result: Result) -> str:
    memory = f", weights {result.weights_memory_gib:.1f} GiB" if result.weights_memory_gib is not None else ""
    lengths = result.lengths
    head = (f"Card: **{result.card}** ({result.device}). Date: {result.date}. torch {result.versions['torch']}, "
            f"transformers {result.versions['transformers']}, CUDA {result.versions['cuda']}. Model: "
            f"{result.model}, random weights, {count(result.params)} parameters "
            f"({count(result.params_without_embedding)} without the embedding), {result.dtype}, attention "
            f"{result.attention}, built in {result.init_s:.1f} s{memory}. Posts: {lengths['posts']:,} synthetic, "
            f"{lengths['min']}-{lengths['max']} tokens (mean {lengths['mean']:.0f}, p50 {lengths['p50']}, "
            f"p90 {lengths['p90']}). Peak assumed: "
            + (f"{result.peak_tflops:g} TFLOPS ({result.peak_source})." if result.peak_tflops
               else f"none ({result.peak_source}).")
            + f" Whole run {result.wall_s:.0f} s.")
    table = ["| batching | batch size | token budget | posts/s | tokens/s | model TFLOPS | MFU | padding | "
             "peak memory |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in result.rows:
        budget = f"{row.max_batch_tokens:,}" if row.max_batch_tokens else "none"
        if row.error:
            table.append(f"| {row.mode} | {row.batch_size} | {budget} | {row.error} | | | | | |")
            continue
        mfu = f"{row.mfu:.1%}" if row.mfu is not None else "n/a"
        memory = f"{row.peak_memory_gib:.1f} GiB" if row.peak_memory_gib is not None else "n/a"
        table.append(f"| {row.mode} | {row.batch_size} | {budget} | {row.posts_per_s:,.0f} | "
                     f"{row.real_tokens_per_s:,.0f} | {row.model_tflops:.1f} | {mfu} | "
                     f"{1 - row.real_tokens / row.padded_tokens:.0%} | {memory} |")
    method = ("Method: `python -m pipeline.bench.gpu_small_model` (`pipeline/bench/gpu_small_model.py`): one timed "
              "pass over all posts per row through `pipeline.torch_batch.BatchScorer` (the `transformers` "
              "backend's pad-forward-softmax), after a warm-up of two batches; MFU = model FLOPs on the real tokens "
              "(2 x parameters without the embedding x tokens + 4 x layers x hidden x tokens^2 per post) per second "
              "over the peak; padding = share of computed tokens that were padding; peak memory = "
              "`torch.cuda.max_memory_allocated` during the pass, weights included.")
    if result.note:
        method += f" {result.note}"
    return "\n".join([head, "", *table, "", method]) + "\n"


def write(result: Result, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / JSON_NAME).write_text(json.dumps(asdict(result), indent=2) + "\n")
    (out / MARKDOWN_NAME).write_text(markdown(result))


def publish(folder: Path, benchmarks: Path) -> None:
    """Put a run's markdown (fetched from the GPU machine's $OUT) between this bench's markers in BENCHMARKS.md."""
    source = folder / MARKDOWN_NAME if folder.is_dir() else folder
    replace_section(benchmarks, SECTION, source.read_text())
    print(f"{source} -> {benchmarks} (section {SECTION})")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench.gpu_small_model",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, help="folder for gpu_small_model.json and .md (on the device: $OUT)")
    parser.add_argument("--publish", type=Path, metavar="DIR",
                        help="put DIR/gpu_small_model.md into BENCHMARKS.md and exit (no measurement)")
    parser.add_argument("--benchmarks", type=Path, default=BENCHMARKS, help="the file --publish writes")
    parser.add_argument("--tiny", action="store_true", help="a tiny Qwen2 on CPU, few posts: the test of this script")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda; cpu with --tiny)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--posts", type=int, help="posts per measurement (default 4096; 96 with --tiny)")
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")],
                        help="comma-separated (default 32,64,128,256; 8,32 with --tiny)")
    parser.add_argument("--tokens-per-post", type=int, default=64,
                        help="token budget per batch = batch size x this (default 64)")
    parser.add_argument("--max-length", type=int, help="longest post in tokens (default 256; 64 with --tiny)")
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak, if not in the table")
    parser.add_argument("--time-budget-s", type=float, default=420.0,
                        help="start no new measurement after this many seconds (default 420)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.publish is None and args.out is None:
        parser.error("give --out DIR (measure) or --publish DIR")
    args.posts = args.posts or (96 if args.tiny else 4096)
    args.batch_sizes = args.batch_sizes or ([8, 32] if args.tiny else [32, 64, 128, 256])
    args.max_length = args.max_length or (64 if args.tiny else 256)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.publish is not None:
        publish(args.publish, args.benchmarks)
        return 0
    result = run(args)
    print(f"wrote {args.out / JSON_NAME} and {args.out / MARKDOWN_NAME} in {result.wall_s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
