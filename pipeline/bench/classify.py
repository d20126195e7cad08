"""Raw classification throughput: every backend at several batch sizes, against the engine's offline call.

The reference is vLLM's own offline ``LLM.classify`` on all posts in one call, measured in the same run, so
every backend is reported as a ratio to it (the only comparison that survives a change of machine).
Backends run one after the other: two engines on the same cores would measure each other.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline import codec
from pipeline.backends import make_classifier
from pipeline.backends.base import Classifier
from pipeline.policy import Policy

SEED_CORPUS = Path(__file__).resolve().parent.parent / "data" / "seed_corpus.jsonl"
DEFAULT_BATCH_SIZES = (1, 8, 32, 128, 512)


@dataclass(frozen=True)
class Row:
    backend: str
    batch_size: int | None  # None: the engine's offline call on all posts at once
    posts: int
    seconds: float

    @property
    def posts_per_s(self) -> float:
        return self.posts / self.seconds if self.seconds else 0.0


def bench_posts(n: int, *, seed: int = 0) -> list[str]:
    """``n`` posts of realistic lengths, the same ones every run: a seeded sample of the seed corpus."""
    texts = [str(codec.loads(line)["text"]) for line in SEED_CORPUS.read_bytes().splitlines() if line.strip()]
    rng = random.Random(seed)
    return [texts[rng.randrange(len(texts))] for _ in range(n)]


async def time_backend(classifier: Classifier, texts: Sequence[str], batch_size: int) -> Row:
    """Classify ``texts`` in consecutive batches of ``batch_size`` after one warm-up batch."""
    await classifier.classify(texts[:batch_size])
    started = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        await classifier.classify(texts[start:start + batch_size])
    return Row(classifier.backend, batch_size, len(texts), time.perf_counter() - started)


async def run(model_dir: Path, policy: Policy, *, n_posts: int, batch_sizes: Sequence[int],
              backends: Sequence[str], max_length: int, server_url: str | None = None) -> list[Row]:
    """Measure each backend at each batch size, plus the offline reference. Starts (and stops) its own
    vLLM server for ``vllm-http`` unless ``server_url`` is given."""
    from pipeline.serving import ModelServer

    texts = bench_posts(n_posts)
    rows: list[Row] = []
    for kind in backends:
        server: ModelServer | None = None
        options: dict[str, object] = {"max_length": max_length}
        if kind == "vllm-http":
            if server_url is None:
                server = ModelServer(model_dir, port=0)
                await asyncio.to_thread(server.start)
                server_url = server.url
            options.update(url=server_url, batch_size=max(batch_sizes))
        classifier = make_classifier(kind, model_dir, policy, **options)
        try:
            await classifier.check()
            if kind == "vllm-local":
                rows.append(await _offline_reference(classifier, texts))
            for batch_size in batch_sizes:
                rows.append(await time_backend(classifier, texts, batch_size))
        finally:
            await classifier.aclose()
            if server is not None:
                await asyncio.to_thread(server.stop)
                server_url = None
    return rows


async def _offline_reference(classifier: Classifier, texts: Sequence[str]) -> Row:
    """The engine's own ``LLM.classify`` on all posts in one call (after a warm-up call)."""
    from pipeline.backends.vllm_local import VllmLocalClassifier

    assert isinstance(classifier, VllmLocalClassifier)
    raw = classifier.classify_raw
    await asyncio.to_thread(raw, list(texts[:32]))
    started = time.perf_counter()
    await asyncio.to_thread(raw, list(texts))
    return Row("vllm offline LLM.classify", None, len(texts), time.perf_counter() - started)


def render_markdown(rows: Sequence[Row], *, machine: str, date: str, model: str, max_length: int) -> str:
    reference = next((r for r in rows if r.batch_size is None), None)
    lines = [
        f"Machine: {machine}. Date: {date}. Model: {model}. {rows[0].posts if rows else 0} posts from the seed "
        f"corpus (5-76 words), max_length {max_length} tokens.",
        "",
        "| backend | batch size | posts/s | vs. offline LLM.classify |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        ratio = f"{row.posts_per_s / reference.posts_per_s:.2f}" if reference and reference.posts_per_s else "—"
        batch = "all" if row.batch_size is None else str(row.batch_size)
        lines.append(f"| {row.backend} | {batch} | {row.posts_per_s:,.0f} | {ratio} |")
    best_http = max((r for r in rows if r.backend == "vllm-http"), key=lambda r: r.posts_per_s, default=None)
    if best_http and reference:
        lines += ["", f"Best vllm-http (batch {best_http.batch_size}): "
                      f"{best_http.posts_per_s / reference.posts_per_s:.0%} of the engine's offline throughput."]
    return "\n".join(lines) + "\n"
