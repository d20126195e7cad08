"""The main job (``modcascade run``, ``make run``): the whole classify path on one machine, live.

    1. the demo model, trained from the seed corpus if MODCASCADE_MODEL_DIR holds none (~2 min, once)
    2. the embedded broker (or the configured Kafka) with the topics, and the vLLM model server
    3. the classify worker, the same code as ``modcascade worker classify``, and, when a frontier model is
       configured for the policy's provider (an Anthropic key, or an OpenAI-compatible endpoint), the adjudicate
       worker; without one, escalations wait on their topic and the summary says how to enable adjudication
    4. the review console (``modcascade review``, a child process on the same broker) when reviewers are configured
       or ``--review`` asks for it; its URL is printed (pipeline/app/review_console.py)
    5. a stream of demo posts (spam waves and malformed records included) published at a steady rate
    6. a live summary read back from the output topics, then where the verdicts are

The summary is computed from what reached the topics, not from the worker's counters: it shows what a
downstream consumer would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import REGISTRY
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from pipeline import codec
from pipeline.app.review_console import RunningConsole, start_review_console
from pipeline.app.summary import RunSummary, percentile
from pipeline.kafka.readback import TopicReader, keyed, produce
from pipeline.metrics import Metrics, serve
from pipeline.policy import load_policy
from pipeline.records import AdjudicationRequest, DeadLetter, Record, Verdict
from pipeline.settings import Settings, load_settings

RUN_DIR = Path("runs/latest")
_EMBEDDED_FETCH_WAIT_MS = 20


@dataclass(frozen=True)
class MainJobOptions:
    posts: int = 3000
    rate_per_s: float = 150.0
    """Offered load; the CPU model serves ~300 posts/s on 2 cores, so this is about half its capacity."""
    out: Path = RUN_DIR
    """Where the run's verdicts, escalations and dead letters are written as JSONL."""
    keep: bool = False
    """Keep broker, model server and worker up after the stream, until Ctrl-C."""
    timeout_s: float = 300.0
    review: bool | None = None
    """Start the review console next to the workers: True always (the job fails if it cannot start), False never,
    None when reviewers are configured (MODCASCADE_REVIEW_USERS)."""


async def run_main_job(console: Console, options: MainJobOptions) -> RunSummary:
    from pipeline.app.demo import demo_stream, ensure_demo_model
    from pipeline.app.runtime import kafka_up, stop_on_sigterm
    from pipeline.components import configured_providers
    from pipeline.services import run_adjudicate_worker, run_classify_worker
    from pipeline.serving import ModelServer

    stop_on_sigterm()
    settings = load_settings()
    ensure_demo_model(settings.model.dir, console, policy_path=settings.policy_path)
    policy = load_policy(settings.policy_path)
    console.print(f"policy [bold]{policy.name}[/] version {policy.version} ({settings.policy_path})")
    adjudicating = policy.adjudication.provider in configured_providers(settings)
    if adjudicating:
        console.print(f"adjudication: [bold]{policy.adjudication.model}[/] through {policy.adjudication.provider} "
                      "(real calls, real cost)")

    options.out.mkdir(parents=True, exist_ok=True)
    # One machine shares its cores between the model, the broker and the workers: the engine gets all of them
    # (vLLM reserves one for its scheduler by default). On 2 cores this took p50/p99 from ~280/680 ms to ~190/300.
    reserved = settings.model.server_reserved_cpus
    server = ModelServer(settings.model.dir, port=0, max_model_len=max(256, settings.model.max_length),
                         reserved_cpus=0 if reserved is None else reserved,
                         log_path=options.out / "model-server.log")
    console.print(f"starting the vLLM model server on {settings.model.dir} (~40 s; log: {server.log_path})")
    starting = asyncio.create_task(asyncio.to_thread(server.start))
    try:
        async with kafka_up(settings, console):
            with console.status("waiting for the model server to load the model"):
                await starting
            console.print(f"model [bold]{server.model_name}[/] ({server.info.version}) served at {server.url}")
            settings = _with_server(settings, server.url)
            await _warm_up(settings)
            metrics_note = _serve_metrics(settings)
            metrics = Metrics.create()  # one set for both workers: they share this process's registry
            stop = asyncio.Event()
            workers: dict[asyncio.Task[object], asyncio.Event] = {}
            ready = asyncio.Event()
            workers[asyncio.create_task(run_classify_worker(settings, stop, metrics=metrics, on_ready=ready.set),
                                        name="classify worker")] = ready
            if adjudicating:
                ready = asyncio.Event()
                workers[asyncio.create_task(run_adjudicate_worker(settings, stop, metrics=metrics, on_ready=ready),
                                            name="adjudicate worker")] = ready
            review: RunningConsole | None = None
            try:
                # The console starts while the workers join their groups; it stops after them, before the broker.
                review = await start_review_console(console, settings, wanted=options.review,
                                                    log_path=options.out / "review.log")
                for worker, ready in workers.items():
                    await _until_ready(worker, ready)
                notes = "\n".join(note for note in (metrics_note, review.note if review else "") if note)
                summary = await _stream_and_watch(console, settings, options, demo_stream(options.posts),
                                                  list(workers), notes, adjudicating=adjudicating)
                if options.keep:
                    _print_keep(console, settings, review)
                    await asyncio.Event().wait()
                elif review is not None:
                    console.print("the review console stops with the job: `modcascade run --keep` keeps it up")
            finally:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.gather(*workers), timeout=30)
                if review is not None:
                    await review.stop()
    finally:
        if not starting.done():
            starting.cancel()
        await asyncio.to_thread(server.stop)
    return summary


async def _until_ready(worker: asyncio.Task[object], ready: asyncio.Event) -> None:
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait({worker, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.is_set():
        worker.result()  # raises the worker's error
        raise RuntimeError(f"the {worker.get_name()} stopped before it was ready")


async def _warm_up(settings: Settings) -> None:
    """A fresh vLLM server answers its first requests several times slower than later ones (allocations, first
    passes at each batch shape): a few calls of growing size before the stream starts, so that the summary's
    latency is the pipeline's, not the server's start (production servers are warm; their probes classify too)."""
    from pipeline.components import build_classifier

    classifier = build_classifier(settings)
    try:
        for size in (1, 8, 32, 64):
            await classifier.classify([f"warming up the model server, post {i} of {size}" for i in range(size)])
    finally:
        await classifier.aclose()


def _with_server(settings: Settings, url: str) -> Settings:
    """Point the worker at the server started here. On the embedded broker (one machine, one worker) a short
    group session makes the worker's first join take ~1 s instead of ~5 s (tansu waits half a session), and a
    short fetch wait cuts each hop through it: tansu answers a fetch that found nothing only after part of
    ``fetch.max.wait.ms`` even when records arrive meanwhile (~25 ms per hop at 100 ms, ~8 ms at 20 ms;
    BENCHMARKS.md). A real Kafka answers as soon as records arrive, so a configured one keeps its settings."""
    model = settings.model.model_copy(update={"server_url": url, "backend": "vllm-http"})
    update: dict[str, object] = {"model": model}
    if settings.uses_embedded_broker:
        update["kafka"] = settings.kafka.model_copy(update={
            "session_timeout_ms": 2000, "heartbeat_interval_ms": 300,
            "fetch_max_wait_ms": min(settings.kafka.fetch_max_wait_ms, _EMBEDDED_FETCH_WAIT_MS)})
    return settings.model_copy(update=update)


def _serve_metrics(settings: Settings) -> str:
    if not settings.metrics_port:
        return ""
    try:
        serve(settings.metrics_port, REGISTRY)
    except OSError:
        return f"(port {settings.metrics_port} busy: no metrics endpoint)"
    return f"metrics: http://127.0.0.1:{settings.metrics_port}/metrics"


async def _stream_and_watch(console: Console, settings: Settings, options: MainJobOptions, records: list[bytes],
                            workers: list[asyncio.Task[object]], metrics_note: str, *, adjudicating: bool
                            ) -> RunSummary:
    policy = load_policy(settings.policy_path)
    summary = RunSummary(policy)
    topics = settings.topics.all()
    roles = {topics[role]: role for role in ("verdicts", "adjudication", "dead_letter")}
    async with _outputs(settings) as reader, _sinks(options.out) as sinks:
        started = time.monotonic()
        streamed_s = 0.0
        publishing = asyncio.create_task(_publish(settings, topics["posts"], records, options.rate_per_s))
        try:
            with Live(_render(summary, len(records), 0.0, metrics_note, adjudicating), console=console,
                      refresh_per_second=4, transient=False) as live:
                while summary.records < len(records) or (adjudicating and summary.awaiting):
                    for worker in workers:
                        if worker.done():
                            worker.result()  # a dead worker stops the job loudly
                            raise RuntimeError(f"the {worker.get_name()} stopped before the stream was done")
                    if time.monotonic() - started > options.timeout_s:
                        console.print(f"[red]timed out after {options.timeout_s:.0f} s with "
                                      f"{len(records) - summary.records} records unaccounted for and "
                                      f"{summary.awaiting if adjudicating else 0} escalations not adjudicated[/]")
                        break
                    for message in await reader.fetch(0.25):
                        record = _decode(message.topic, message.value or b"", topics)
                        summary.add(record)
                        sinks[roles[message.topic]].write(message.value or b"")
                    reader.messages.clear()  # counted and written: keep nothing
                    if summary.records < len(records):
                        streamed_s = time.monotonic() - started  # the records rate stops with the stream
                    live.update(_render(summary, len(records), streamed_s, metrics_note, adjudicating))
            await publishing
        finally:
            publishing.cancel()
    console.print()
    _print_footer(console, summary, settings, options.out, adjudicating=adjudicating)
    return summary


async def _publish(settings: Settings, topic: str, records: list[bytes], rate_per_s: float) -> None:
    await produce(settings, topic, keyed(records), rate_per_s=rate_per_s, client="demo producer")


@contextlib.asynccontextmanager
async def _outputs(settings: Settings) -> AsyncIterator[TopicReader]:
    # Start at the current end of each output topic before any post is published: on a configured Kafka
    # the topics hold earlier runs' outputs, which this summary must not count.
    topics = settings.topics.all()
    outputs = [topics["verdicts"], topics["adjudication"], topics["dead_letter"]]
    async with TopicReader.open(settings, outputs, start="end", client="summary consumer") as reader:
        yield reader


class _Sink:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._file = path.open("wb")

    def write(self, value: bytes) -> None:
        self._file.write(value + b"\n")
        self.lines += 1

    def close(self) -> None:
        self._file.close()


@contextlib.asynccontextmanager
async def _sinks(out: Path) -> AsyncIterator[dict[str, _Sink]]:
    sinks = {role: _Sink(out / f"{role.replace('_', '-')}.jsonl") for role in ("verdicts", "adjudication",
                                                                                       "dead_letter")}
    try:
        yield sinks
    finally:
        for sink in sinks.values():
            sink.close()


def _decode(topic: str, value: bytes, topics: dict[str, str]) -> Record:
    if topic == topics["verdicts"]:
        return codec.decode(value, Verdict)
    if topic == topics["adjudication"]:
        return codec.decode(value, AdjudicationRequest)
    return codec.decode(value, DeadLetter)


def _render(summary: RunSummary, total: int, elapsed: float, metrics_note: str, adjudicating: bool) -> Group:
    table = Table(title="modcascade: live", show_header=False, min_width=60)
    table.add_column(style="bold")
    table.add_column()
    rate = summary.records / elapsed if elapsed else 0.0
    table.add_row("records", f"{summary.records:,} of {total:,} ({rate:,.0f}/s)")
    table.add_row("decisions", ", ".join(f"{k} {v:,}" for k, v in summary.decisions.most_common()) or "-")
    table.add_row("blocked / reviewed for", ", ".join(f"{k} {v:,}" for k, v in summary.categories.most_common())
                  or "-")
    table.add_row("escalated to the frontier", f"{summary.escalations.total():,} ({summary.escalation_rate:.1%}): "
                  + ", ".join(f"{k} {v:,}" for k, v in summary.escalations.most_common()))
    if adjudicating:
        fallbacks = ", ".join(f"{k} {v:,}" for k, v in summary.fallback_flags.most_common())
        table.add_row("adjudicated", f"{summary.adjudicated:,} of {summary.escalations.total():,}: frontier "
                      f"{summary.routes['frontier']:,}, fallback {summary.routes['fallback']:,}"
                      + (f" ({fallbacks})" if fallbacks else ""))
    else:
        table.add_row("awaiting adjudication", f"{summary.awaiting:,} (no frontier model configured)")
    table.add_row("final verdicts by route", ", ".join(f"{k} {v:,}" for k, v in summary.routes.most_common()) or "-")
    table.add_row("cache hits", f"{summary.routes['cache']:,} ({summary.cache_hit_rate:.1%} of small-model verdicts)")
    table.add_row("dead letters", ", ".join(f"{k} {v:,}" for k, v in summary.dead_letters.most_common()) or "0")
    p50, p99 = summary.latency_ms(50), summary.latency_ms(99)
    table.add_row("latency p50 / p99", f"{p50:,.0f} ms / {p99:,.0f} ms (post in Kafka → decided by the classify "
                  "worker)" if p50 is not None and p99 is not None else "-")
    if adjudicating:
        p50 = percentile(summary.adjudication_latencies_ms, 50)
        table.add_row("frontier cost (real, from usage)", f"${summary.frontier_usd:,.4f}"
                      + (f"; adjudication latency p50 {p50:,.0f} ms" if p50 is not None else ""))
    saved = 1 - summary.cascade_usd / summary.all_frontier_usd if summary.all_frontier_usd else 0.0
    table.add_row("cost", f"${summary.cascade_usd:,.4f} vs ${summary.all_frontier_usd:,.4f} all-frontier "
                  f"({saved:.1%} saved; all-frontier and any unadjudicated escalation are estimates)")
    if summary.duplicates:
        table.add_row("duplicates (de-duplicated)", f"{summary.duplicates:,}")
    return Group(table, metrics_note) if metrics_note else Group(table)


def _print_footer(console: Console, summary: RunSummary, settings: Settings, out: Path, *, adjudicating: bool
                  ) -> None:
    topics = settings.topics.all()
    if not adjudicating and summary.escalations.total():
        from pipeline.adjudication.backends import HOW_TO_CONFIGURE

        provider = summary.policy.adjudication.provider
        console.print(f"[yellow]{summary.awaiting:,} escalated posts await adjudication[/] on the topic "
                      f"{topics['adjudication']}: no frontier model is configured for this policy's provider "
                      f"({provider}). To adjudicate them, {HOW_TO_CONFIGURE[provider]}, and run `make run` again "
                      "(or `modcascade worker adjudicate` next to `modcascade run --keep`).")
    console.print(f"verdicts written to [bold]{out / 'verdicts.jsonl'}[/], escalations to "
                  f"[bold]{out / 'adjudication.jsonl'}[/], dead letters to [bold]{out / 'dead-letter.jsonl'}[/]")
    console.print(f"live, they are the topics {topics['verdicts']}, {topics['adjudication']} and "
                  f"{topics['dead_letter']}: `modcascade run --keep` keeps everything up so that "
                  "`modcascade produce FILE` and `modcascade tail verdicts` work from another terminal")


def _print_keep(console: Console, settings: Settings, review: RunningConsole | None = None) -> None:
    console.print(f"still running (broker {settings.bootstrap}, model server {settings.model.server_url}"
                  + (f", review console {review.url}" if review else "") + "); try `modcascade produce "
                  "pipeline/data/sample_posts.jsonl` and `modcascade tail verdicts --follow` in another terminal. "
                  "Ctrl-C to stop.")
