"""`modcascade bench`: run the benchmark suites and write their tables into BENCHMARKS.md.

    classify   raw classification throughput per backend and batch size (pipeline/bench/classify.py)
    pipeline   the classify worker end to end: ceiling, vs raw backend, latency (pipeline/bench/pipeline.py)
    batch      `modcascade batch` on 10k and 100k posts: vs the stream, flat memory (pipeline/bench/batch.py)
    reliability  worker processes SIGKILLed at random: lost ids, duplicates, dead letters, appended to RELIABILITY.md
                 (pipeline/bench/reliability.py)
    monitor    the drift monitor's throughput against the classify worker's output rate (pipeline/bench/monitor.py)
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from pipeline.bench import classify, report
from pipeline.errors import ConfigError
from pipeline.policy import Policy, load_policy
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.bench.reliability import ChaosOptions

BENCHMARKS_MD = Path("BENCHMARKS.md")
SUITES = ("classify", "pipeline", "batch", "reliability", "monitor")


async def run_bench(console: Console, *, model_dir: Path, policy_path: Path, n_posts: int,
                    batch_sizes: Sequence[int], backends: Sequence[str], max_length: int, write: bool,
                    suites: Sequence[str] = SUITES, settings: Settings | None = None,
                    stream_posts: int | None = None, batch_posts: tuple[int, int] | None = None,
                    chaos: ChaosOptions | None = None) -> None:
    """Run ``suites``; ``stream_posts`` and ``batch_posts`` (small, large) size the batch suite (None: its
    defaults, 2,000 and 10,000 / 100,000 posts); ``chaos`` configures the reliability suite (None: its defaults)."""
    if unknown := sorted(set(suites) - set(SUITES)):
        raise ConfigError(f"unknown bench suite {', '.join(unknown)}: use {', '.join(SUITES)}")
    policy = load_policy(policy_path)
    with tempfile.TemporaryDirectory(prefix="modcascade-bench-") as scratch:
        model, label = bench_model(console, policy, model_dir, Path(scratch))
        if "classify" in suites:
            await _classify_suite(console, model, label, policy, n_posts=n_posts, batch_sizes=batch_sizes,
                                  backends=backends, max_length=max_length, write=write)
        if "pipeline" in suites:
            await _pipeline_suite(console, model, label, policy_path, settings=settings, write=write)
        if "batch" in suites:
            await _batch_suite(console, model, label, policy_path, settings=settings, write=write,
                               stream_posts=stream_posts, batch_posts=batch_posts)
        if "reliability" in suites:
            await _reliability_suite(console, model, label, policy_path, settings=settings, write=write, chaos=chaos)
        if "monitor" in suites:
            await _monitor_suite(console, policy_path, settings=settings, write=write)


def bench_model(console: Console, policy: Policy, model_dir: Path, scratch: Path) -> tuple[Path, str]:
    """The model to measure and its name in the tables: ``model_dir``, or an untrained MiniLM classifier for the
    policy's taxonomy built under ``scratch`` when there is no model there."""
    if (model_dir / "config.json").exists():
        return model_dir, model_dir.name
    model = scratch / "untrained-minilm"
    console.print(f"no model at {model_dir}: measuring an untrained MiniLM classifier for {policy.name}'s "
                  "taxonomy (throughput depends on the architecture, not the weights)")
    _untrained_classifier(policy, model)
    return model, "untrained MiniLM-L6 head"


async def _classify_suite(console: Console, model: Path, label: str, policy: Policy, *, n_posts: int,
                          batch_sizes: Sequence[int], backends: Sequence[str], max_length: int, write: bool) -> None:
    console.print(f"classification throughput: {', '.join(backends)} at batch sizes "
                  f"{', '.join(map(str, batch_sizes))} on {n_posts} posts (this takes a few minutes)")
    rows = await classify.run(model, policy, n_posts=n_posts, batch_sizes=batch_sizes, backends=backends,
                              max_length=max_length)
    table = classify.render_markdown(rows, machine=report.machine(), date=report.today(), model=label,
                                     max_length=max_length)
    _publish(console, "classify", table, write)


async def _pipeline_suite(console: Console, model: Path, label: str, policy_path: Path, *,
                          settings: Settings | None, write: bool) -> None:
    from pipeline.bench import pipeline

    result = await pipeline.run_pipeline_bench(console, model_dir=model, policy_path=policy_path, settings=settings,
                                               model_label=label)
    _publish(console, "pipeline", pipeline.render_markdown(result, machine=report.machine(), date=report.today()),
             write)


async def _batch_suite(console: Console, model: Path, label: str, policy_path: Path, *, settings: Settings | None,
                       write: bool, stream_posts: int | None, batch_posts: tuple[int, int] | None) -> None:
    from pipeline.bench import batch

    result = await batch.run_batch_bench(console, model_dir=model, policy_path=policy_path, settings=settings,
                                         stream_posts=stream_posts or batch.STREAM_POSTS,
                                         batch_posts=batch_posts or batch.BATCH_POSTS, model_label=label)
    _publish(console, "batch", batch.render_markdown(result, machine=report.machine(), date=report.today()), write)


async def _reliability_suite(console: Console, model: Path, label: str, policy_path: Path, *,
                             settings: Settings | None, write: bool, chaos: ChaosOptions | None) -> None:
    from pipeline.bench.reliability import ChaosOptions, run_reliability_bench
    from pipeline.bench.reliability_report import RELIABILITY_MD, append_report, render_markdown

    result = await run_reliability_bench(console, chaos or ChaosOptions(), model_dir=model, policy_path=policy_path,
                                         settings=settings, model_label=label)
    body = render_markdown(result, machine=report.machine(), date=report.today())
    console.print(body)
    if write:
        append_report(RELIABILITY_MD, body)
        console.print(f"appended to {RELIABILITY_MD}")


async def _monitor_suite(console: Console, policy_path: Path, *, settings: Settings | None, write: bool) -> None:
    from pipeline.bench import monitor

    result = await monitor.run_monitor_bench(console, policy_path=policy_path, settings=settings)
    _publish(console, "monitor", monitor.render_markdown(result, machine=report.machine(), date=report.today()), write)


def _publish(console: Console, section: str, table: str, write: bool) -> None:
    console.print(table)
    if write:
        report.replace_section(BENCHMARKS_MD, section, table)
        console.print(f"written to {BENCHMARKS_MD}")


def _untrained_classifier(policy: Policy, out: Path) -> None:
    from transformers import AutoTokenizer, BertForSequenceClassification

    from pipeline.training.config import default_base_model

    labels = (policy.taxonomy.safe, *policy.taxonomy.categories)
    base = default_base_model()
    model = BertForSequenceClassification.from_pretrained(
        base, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
