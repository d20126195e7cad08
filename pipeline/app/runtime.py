"""Async shells behind the CLI: bring up Kafka (embedded or configured), produce, tail, the main job.

Everything here is orchestration; the logic lives in the library modules it calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

from rich.console import Console

from pipeline.errors import SettingsError
from pipeline.kafka.broker import EmbeddedBroker
from pipeline.kafka.clients import start_client
from pipeline.kafka.readback import TopicReader, jsonl_records, produce
from pipeline.kafka.topics import ensure_topics
from pipeline.settings import Settings, load_settings


@contextlib.asynccontextmanager
async def kafka_up(settings: Settings, console: Console | None = None) -> AsyncIterator[Settings]:
    """Yield once a broker is reachable with the topics created: the configured Kafka, or an embedded
    broker started here (and stopped on exit; its memory storage goes with it)."""
    broker: EmbeddedBroker | None = None
    if settings.uses_embedded_broker:
        broker = EmbeddedBroker.from_settings(settings.broker)
        await asyncio.to_thread(broker.start)
        if console:
            console.print(f"embedded Kafka-compatible broker (tansu) listening on [bold]{broker.bootstrap}[/]")
    try:
        await ensure_topics(settings)
        yield settings
    finally:
        if broker is not None:
            await asyncio.to_thread(broker.stop)


def stop_on_sigterm() -> None:
    """Make SIGTERM cancel the running main task, like Ctrl-C does, so cleanup (stopping an embedded
    broker, closing clients) runs instead of the process dying with children left behind."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


async def serve_broker(console: Console, *, probe: bool) -> None:
    stop_on_sigterm()
    settings = load_settings()
    async with kafka_up(settings, console):
        console.print("topics: " + ", ".join(settings.topics.all().values()))
        if probe:
            from pipeline.kafka.probe import probe_features

            for name, result in (await probe_features(settings)).items():
                mark = "[green]yes[/]" if result.supported else "[red]no[/]"
                console.print(f"  {name:<24} {mark}  {result.detail}")
        if settings.uses_embedded_broker:
            console.print("Ctrl-C to stop.")
            await asyncio.Event().wait()


async def serve_model(console: Console, *, model: Path | None, port: int | None, max_model_len: int) -> None:
    """Start vLLM's server on the model, report where it listens, keep it up until Ctrl-C or SIGTERM."""
    from urllib.parse import urlsplit

    from pipeline.serving import ModelServer

    stop_on_sigterm()
    settings = load_settings()
    model_dir = model or settings.model.dir
    url = urlsplit(settings.model.server_url)
    server = ModelServer(model_dir, host=url.hostname or "127.0.0.1", port=port or url.port or 8000,
                         max_model_len=max_model_len, reserved_cpus=settings.model.server_reserved_cpus)
    console.print(f"starting vLLM (pooling runner) on {model_dir}; log: {server.log_path}")
    await asyncio.to_thread(server.start)
    try:
        console.print(f"serving [bold]{server.model_name}[/] ({server.info.version}) at [bold]{server.url}[/] "
                      f"(POST {server.url}/classify). Ctrl-C to stop.")
        await asyncio.Event().wait()
    finally:
        await asyncio.to_thread(server.stop)


async def run_worker(name: str, console: Console, *, check: bool) -> None:
    """Run stream worker ``name`` in the foreground until SIGTERM/Ctrl-C (graceful: the batch in progress
    is finished and committed; a second signal cancels at once). ``check`` only checks its dependencies."""
    from pipeline.components import build_classifier
    from pipeline.metrics import Metrics
    from pipeline.services import run_adjudicate_worker, run_classify_worker, run_feedback_worker

    if name not in ("classify", "adjudicate", "feedback"):
        raise SettingsError(f"unknown worker {name!r}: available: classify, adjudicate, feedback")
    settings = load_settings()
    if check:
        await check_worker(settings, console)
        return
    stop = asyncio.Event()
    task = asyncio.current_task()
    assert task is not None

    def on_signal() -> None:
        if stop.is_set():
            task.cancel()
        else:
            console.print("stopping after the batch in progress (again to stop at once)")
            stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    metrics = Metrics.create()
    serve_metrics(settings)
    where = f", metrics on :{settings.metrics_port}/metrics" if settings.metrics_port else ""
    if name == "adjudicate":
        report = await run_adjudicate_worker(settings, stop, metrics=metrics)
    elif name == "feedback":
        console.print(f"feedback worker: {settings.topics.all()['labels']} at {settings.bootstrap} → "
                      f"{settings.feedback.dataset_dir}{where}")
        report = await run_feedback_worker(settings, stop, metrics=metrics)
    else:
        classifier = build_classifier(settings)
        try:
            def ready() -> None:
                console.print(f"classify worker ready: {classifier.model_name} ({classifier.backend}) reading "
                              f"{settings.topics.all()['posts']} at {settings.bootstrap}{where}")

            report = await run_classify_worker(settings, stop, classifier=classifier, metrics=metrics,
                                               on_ready=ready)
        finally:
            await classifier.aclose()
    console.print(f"{name} worker stopped: {report.records} records in {report.batches} batches, all committed")


def run_monitor(console: Console) -> None:
    """Run the drift monitor (a faust-streaming worker) in the foreground until SIGTERM/Ctrl-C. Its thresholds are
    the ``monitor:`` section of the policy at MODCASCADE_POLICY_PATH, hot-reloaded (an edit of the window layout is
    rejected until a restart: pipeline/monitor/layout.py)."""
    from pipeline.metrics import Metrics
    from pipeline.policy import PolicyStore

    try:
        from pipeline.monitor.app import MonitorApp
        from pipeline.monitor.layout import fixed_layout
    except ModuleNotFoundError as exc:
        if exc.name != "faust" and not (exc.name or "").startswith("faust."):
            raise
        raise SettingsError("the monitor needs faust-streaming: install the monitor extra "
                            "(pip install 'modcascade[monitor]')") from exc
    settings = load_settings()
    metrics = Metrics.create()
    store = PolicyStore(settings.policy_path, metrics, accept=fixed_layout(str(settings.policy_path)))
    policy = store.current
    serve_metrics(settings)
    monitor = MonitorApp(settings, store, metrics=metrics, policy_path=settings.policy_path)
    topics = settings.topics.all()
    config = policy.monitor
    where = f", metrics on :{settings.metrics_port}/metrics" if settings.metrics_port else ""
    console.print(f"monitor: {topics['verdicts']}, {topics['adjudication']}, {topics['dead_letter']} at "
                  f"{settings.bootstrap} in {config.window_s} s windows against the {config.reference} reference "
                  f"({policy.name} {policy.version}) → {topics['alerts']}{where}")
    monitor.run()


async def check_worker(settings: Settings, console: Console) -> None:
    """The worker's health check: broker and topics, model backend, policy; raises on the first failure."""
    from pipeline.components import build_classifier
    from pipeline.kafka.clients import make_admin
    from pipeline.policy import load_policy

    admin = make_admin(settings)
    await start_client(admin, settings, "admin client")
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    missing = [t for t in settings.topics.all().values() if t not in existing]
    if missing:
        raise SettingsError(f"topics {', '.join(missing)} do not exist at {settings.bootstrap}: run "
                            "`modcascade broker` (creates them) or create them in your Kafka")
    console.print(f"broker {settings.bootstrap}: ok, topics present")
    policy = load_policy(settings.policy_path)
    console.print(f"policy {settings.policy_path}: ok ({policy.name} {policy.version})")
    classifier = build_classifier(settings)
    try:
        await classifier.check()
    finally:
        await classifier.aclose()
    console.print(f"model {classifier.model_name} ({classifier.model_version}) on {classifier.backend}: ok")


async def produce_file(file: Path, topic: str | None) -> int:
    """Publish each non-blank line of a JSONL file as it is; the key is the post id when readable."""
    settings = load_settings()
    return await produce(settings, _topic(settings, topic or "posts"), jsonl_records(file))


async def tail_topic(topic: str, *, limit: int | None, follow: bool, out: TextIO) -> None:
    """Print records from the beginning of a topic, one per line; stop when idle unless ``follow``."""
    settings = load_settings()
    shown = 0
    async with TopicReader.open(settings, [_topic(settings, topic)], client="consumer") as reader:
        idle_since = time.monotonic()
        while limit is None or shown < limit:
            records = await reader.fetch(0.5, max_records=None if limit is None else limit - shown)
            reader.messages.clear()  # a tail runs for ever: keep nothing
            if not records:
                if not follow and time.monotonic() - idle_since > 2.0:
                    break
                continue
            idle_since = time.monotonic()
            for msg in records:
                out.write((msg.value or b"").decode("utf-8", "replace") + "\n")
                shown += 1


def _topic(settings: Settings, name: str) -> str:
    """Accept a role ('posts', 'dead-letter') or a full topic name."""
    roles = settings.topics.all()
    return roles.get(name.replace("-", "_"), name)


def serve_metrics(settings: Settings) -> None:
    """Serve this process's Prometheus metrics on ``settings.metrics_port`` (0: no endpoint)."""
    from pipeline.metrics import serve

    try:
        serve(settings.metrics_port)
    except OSError as exc:
        raise SettingsError(f"cannot serve metrics on port {settings.metrics_port} ({exc.strerror}): give each "
                            "worker its own MODCASCADE_METRICS_PORT, or 0 to turn the endpoint off") from exc
