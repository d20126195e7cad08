"""Pipeline throughput and latency: the classify worker end to end through Kafka, three measurements in one run.

    ceiling    the worker (``run_classify_worker``, in this process) with the zero-cost ``FakeClassifier`` on N
               pre-produced posts (default 50,000), batch_max_posts 2000: what the streaming code itself can
               move. Goal: >= 10,000 posts/s per worker process. Beside it, alternating (bare, worker, bare,
               worker), the limit of the client library on the same records: a bare aiokafka loop in this process
               (getmany → orjson decode → trivial decision → one output per post → await the acks → commit;
               ``faust_ceiling.bare_loop``), clients from the same settings. Goal: the worker >= 0.5 x its
               throughput; both reported with CPU-seconds per 1,000 posts (``time.process_time`` over the run).
    model      one vLLM server (``ModelServer``) on the model; the same M posts (default 2,000) through
               (a) the raw backend: ``await classifier.classify(chunk)`` over consecutive chunks of the worker's
                   batch_max_posts, with the classifier the worker builds (``build_classifier``: same HTTP batch
                   size and connection limit), and
               (b) the pipeline: the posts pre-produced, the worker built from the same settings.
               Reported as pipeline / raw. Goal: >= 0.95. (b) alone is ``measure_stream``: the stream's throughput
               that the batch suite (pipeline/bench/batch.py) compares ``modcascade batch`` with.
    latency    offered load 0.5 x the pipeline throughput of (b), paced for ~20 s into the worker of (b), each post
               stamped ``created_at`` at send time; a consumer of verdicts + adjudication takes receive time -
               created_at per post: p50 / p99.

How the worker is timed: it runs with its own metrics, except that the intake counter (``records_consumed``) and
the outcome counters (``decisions``, ``escalations``, ``dead_letters``) also stamp the time when they move. The
intake counter moves when a batch has been fetched, the outcome counters only once a batch's outputs are
acknowledged (acks=all) and its offsets committed. A run is timed from the first records consumed (so the group
join and the first fetch request are excluded) to the moment the last post's output is committed. Afterwards the
output topics are read back and must hold exactly one output per post, by post id.

Posts are a seeded sample of the seed corpus with a unique suffix each, and the score cache is off
(cache_entries=0): no post is served from the cache. Everything shares one machine (broker, worker, model
server), and the worker shares this process's event loop with the producer and the latency consumer, as a
benchmark of a real deployment on this machine would not; ratios within the run are what carry over.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import math
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter
from rich.console import Console

from pipeline import codec
from pipeline.backends.fake import FakeClassifier
from pipeline.bench.classify import bench_posts
from pipeline.bench.faust_ceiling import bare_loop
from pipeline.components import build_classifier
from pipeline.kafka import EmbeddedBroker, delete_topics, ensure_topics, make_consumer, make_producer
from pipeline.kafka.clients import start_client
from pipeline.kafka.readback import TopicReader
from pipeline.kafka.readback import produce as produce_records
from pipeline.kafka.stream import StreamReport, freeze_startup_heap
from pipeline.metrics import Metrics
from pipeline.policy import load_policy
from pipeline.services import run_classify_worker
from pipeline.serving import ModelServer
from pipeline.settings import Settings, TopicNames, load_settings

T = TypeVar("T")

CEILING_POSTS = 50_000
CEILING_BATCH = 2000
CEILING_GOAL_POSTS_PER_S = 10_000.0
LIMIT_ROUNDS = 2  # bare loop and worker alternate: A B A B
LIMIT_RATIO_GOAL = 0.5  # the worker's ceiling as a share of the bare aiokafka loop's throughput
MODEL_POSTS = 2_000
RATIO_GOAL = 0.95
LATENCY_S = 20.0
LATENCY_LOAD = 0.5  # offered load, as a share of the measured pipeline throughput
MAX_MODEL_LEN = 256

_STOP_S = 30.0  # a stopped worker finishes its batch within this
_JOIN_S = 60.0  # group join + first fetch
_DRAIN_S = 60.0  # latency posts still in flight after the last send
_SESSION_MS_EMBEDDED = 3000  # tansu delays a first join by about half the session timeout
_SESSION_MS_KAFKA = 6000  # Kafka's default minimum
# tansu answers a fetch that found no data only after a share of fetch.max.wait.ms, even when records arrive
# meanwhile (aiokafka's default 500 ms: ~120 ms per hop, 100 ms: ~25 ms, 20 ms: ~8 ms). The latency receiver is the
# measuring instrument, so it asks often; the worker keeps its own settings.
_RECEIVER_FETCH_WAIT_MS = 20


# -- results --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """``posts`` moved in ``seconds``, at ``batch_max_posts`` (worker batches, or raw chunks); ``cpu_s``: this
    process's CPU time (user + system) over the same span, where measured."""

    posts: int
    seconds: float
    batch_max_posts: int
    cpu_s: float = 0.0

    @property
    def posts_per_s(self) -> float:
        return self.posts / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_s_per_1k(self) -> float:
        """CPU-seconds per 1,000 posts."""
        return 1000 * self.cpu_s / self.posts if self.posts else 0.0


@dataclass(frozen=True)
class LimitComparison:
    """The bare aiokafka loop and the worker's ceiling, run alternately (A B A B ...) on the same records."""

    bare: tuple[Run, ...]
    worker: tuple[Run, ...]

    @property
    def bare_posts_per_s(self) -> float:
        return statistics.median(r.posts_per_s for r in self.bare)

    @property
    def worker_posts_per_s(self) -> float:
        return statistics.median(r.posts_per_s for r in self.worker)

    @property
    def bare_cpu_s_per_1k(self) -> float:
        return statistics.median(r.cpu_s_per_1k for r in self.bare)

    @property
    def worker_cpu_s_per_1k(self) -> float:
        return statistics.median(r.cpu_s_per_1k for r in self.worker)

    @property
    def ratio(self) -> float:
        """Worker throughput as a share of the bare loop's (medians of the runs)."""
        return self.worker_posts_per_s / self.bare_posts_per_s if self.bare_posts_per_s else 0.0

    @property
    def cpu_ratio(self) -> float:
        """Worker CPU per post over the bare loop's."""
        return self.worker_cpu_s_per_1k / self.bare_cpu_s_per_1k if self.bare_cpu_s_per_1k else 0.0


@dataclass(frozen=True)
class Latency:
    """receive time - created_at of ``posts`` posts sent at ``offered_per_s`` for ``seconds``."""

    offered_per_s: float
    posts: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    batch_max_posts: int
    batch_max_wait_ms: int


@dataclass(frozen=True)
class PipelineBenchResult:
    limit: LimitComparison
    raw: Run
    pipeline: Run
    latency: Latency
    model: str
    broker: str
    http_batch_size: int
    http_max_connections: int
    load_before: float = 0.0
    """The machine's 1-minute load average when the suite started (other work skews every figure)."""

    @property
    def ratio(self) -> float:
        """Pipeline throughput with the model as a share of the raw backend's."""
        return self.pipeline.posts_per_s / self.raw.posts_per_s if self.raw.posts_per_s else 0.0

    @property
    def ceiling_met(self) -> bool:
        return self.limit.worker_posts_per_s >= CEILING_GOAL_POSTS_PER_S

    @property
    def limit_met(self) -> bool:
        return self.limit.ratio >= LIMIT_RATIO_GOAL

    @property
    def ratio_met(self) -> bool:
        return self.ratio >= RATIO_GOAL


# -- posts ----------------------------------------------------------------------------------------------------


def bench_texts(n: int, *, seed: int, tag: str) -> list[str]:
    """``n`` distinct texts: a seeded sample of the seed corpus, each with a unique suffix."""
    return [f"{text} #{tag}{i}" for i, text in enumerate(bench_posts(n, seed=seed))]


def post_value(post_id: str, text: str, created_at: datetime | None = None) -> bytes:
    """A post as producers send it."""
    post: dict[str, object] = {"id": post_id, "text": text, "lang": "en"}
    if created_at is not None:
        post["created_at"] = created_at
    return codec.dumps(post)


def post_records(tag: str, texts: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """(key, value) per text; ids ``<tag>-<i>``."""
    return [(f"{tag}-{i}".encode(), post_value(f"{tag}-{i}", text)) for i, text in enumerate(texts)]


# -- settings, broker, clients --------------------------------------------------------------------------------


def bench_settings(base: Settings, policy_path: Path, *, tag: str, batch_max_posts: int,
                   batch_max_wait_ms: int | None = None) -> Settings:
    """``base`` with topics and a consumer group of its own (``tag``), the score cache off, the metrics
    endpoint off, and a session short enough that the group join takes seconds on the embedded broker."""
    session = _SESSION_MS_EMBEDDED if base.uses_embedded_broker else _SESSION_MS_KAFKA
    worker = {"group_id": f"{tag}-classify", "batch_max_posts": batch_max_posts, "cache_entries": 0}
    if batch_max_wait_ms is not None:
        worker["batch_max_wait_ms"] = batch_max_wait_ms
    return base.model_copy(update={
        "topics": TopicNames(prefix=f"{tag}-"),
        "policy_path": policy_path,
        "metrics_port": 0,
        "kafka": base.kafka.model_copy(update={"session_timeout_ms": session, "heartbeat_interval_ms": session // 6}),
        "worker": base.worker.model_copy(update=worker),
    })


def new_tag(what: str) -> str:
    return f"bench-{what}-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def scratch_topics(settings: Settings) -> AsyncIterator[dict[str, str]]:
    """The five topics of ``settings.topics``, created now and deleted afterwards."""
    topics = settings.topics.all()
    await ensure_topics(settings)
    try:
        yield topics
    finally:
        with contextlib.suppress(Exception):  # best effort: an embedded broker forgets them anyway
            await delete_topics(settings, topics.values())


async def produce(settings: Settings, topic: str, records: Iterable[tuple[bytes, bytes]]) -> None:
    """Publish ``records`` (acks=all) and wait for every acknowledgement."""
    await produce_records(settings, topic, records, client="bench producer")


async def read_output_keys(settings: Settings, topics: Sequence[str], expect: int, *, idle_s: float = 1.0,
                           timeout_s: float = 120.0) -> list[bytes]:
    """Keys of every record in ``topics``, read from the beginning until ``expect`` arrived and then nothing
    more for ``idle_s``; what arrived by ``timeout_s`` (the caller checks it against what it expects)."""
    async with TopicReader.open(settings, topics, client="bench output reader") as reader:
        with contextlib.suppress(TimeoutError):
            await reader.read_until(lambda seen: len(seen) >= expect, timeout_s=timeout_s, quiet_s=idle_s)
        return [m.key or b"" for m in reader.messages]


def check_outputs(keys: Sequence[bytes], expected: Iterable[bytes], what: str) -> None:
    """Exactly one output per post, by post id."""
    want = set(expected)
    got = set(keys)
    if got != want or len(keys) != len(want):
        raise RuntimeError(f"{what}: {len(keys)} outputs for {len(got & want)} of {len(want)} posts "
                           f"({len(want - got)} missing, {len(got - want)} unknown, {len(keys) - len(got)} duplicates)")


# -- timing the worker through its own metrics ----------------------------------------------------------------


class Tally:
    """How far the worker got: the sum of some counters' increments, and when they happened."""

    def __init__(self) -> None:
        self.count = 0.0
        self.first_at: float | None = None
        self.first_cpu = 0.0
        self.last_at: float | None = None
        self.last_cpu = 0.0
        self.reached_at: float | None = None
        """When the count last reached the target of :meth:`reach`."""
        self.reached_cpu = 0.0
        """This process's CPU time (``time.process_time``) at ``reached_at``; ``first_cpu`` at ``first_at``."""
        self._target = float("inf")
        self._reached = asyncio.Event()

    def add(self, amount: float) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.count += amount
        self.last_at, self.last_cpu = now, cpu
        if self.first_at is None:
            self.first_at, self.first_cpu = now, cpu
        if self.count >= self._target and not self._reached.is_set():
            self.reached_at, self.reached_cpu = now, cpu
            self._reached.set()

    async def reach(self, target: float) -> None:
        """Return once the count is at least ``target``."""
        self._target = target
        self._reached = asyncio.Event()
        if self.count >= target:
            self.reached_at, self.reached_cpu = self.last_at, self.last_cpu
            return
        await self._reached.wait()


def _tallied(original: Counter, tally: Tally) -> Counter:
    """An unregistered counter like ``original`` (name, labels) whose increments also go to ``tally``."""

    class Tallied(Counter):
        def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
            super().inc(amount, exemplar)
            tally.add(amount)

    return Tallied(original._name, original._documentation, original._labelnames, registry=None)


@dataclass(frozen=True)
class Probe:
    """The worker's metrics, with ``consumed`` (records fetched) and ``done`` (posts whose output is committed)."""

    metrics: Metrics
    consumed: Tally
    done: Tally

    @classmethod
    def create(cls) -> Probe:
        consumed, done = Tally(), Tally()
        m = Metrics.create(CollectorRegistry())
        metrics = dataclasses.replace(
            m, records_consumed=_tallied(m.records_consumed, consumed), decisions=_tallied(m.decisions, done),
            escalations=_tallied(m.escalations, done), dead_letters=_tallied(m.dead_letters, done))
        return cls(metrics, consumed, done)

    def timed(self, posts: int, batch_max_posts: int) -> Run:
        """The run from the first records consumed until ``done`` reached ``posts`` (after ``done.reach``)."""
        return _timed(self.consumed, self.done, posts, batch_max_posts)


def _timed(consumed: Tally, done: Tally, posts: int, batch_max_posts: int) -> Run:
    assert consumed.first_at is not None and done.reached_at is not None
    return Run(posts, done.reached_at - consumed.first_at, batch_max_posts, done.reached_cpu - consumed.first_cpu)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, probe: Probe,
                         classifier: FakeClassifier | None = None) -> AsyncIterator[asyncio.Task[StreamReport]]:
    """The classify worker as a task of this event loop; stopped gracefully on exit (cancelled on an error)."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_classify_worker(settings, stop, classifier=classifier, metrics=probe.metrics),
                               name="bench-classify-worker")
    try:
        yield task
    except BaseException:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    stop.set()
    await asyncio.wait_for(task, _STOP_S)


async def watching(worker: asyncio.Task[Any], awaitable: Awaitable[T], timeout_s: float, what: str) -> T:
    """``await awaitable``, but fail at once if the worker (or loop) stops, and after ``timeout_s``."""
    waiting = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({waiting, worker}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if waiting in done:
            return waiting.result()
        if worker in done:
            worker.result()  # raises the worker's error
            raise RuntimeError(f"{worker.get_name()} stopped while {what}")
        raise TimeoutError(f"timed out after {timeout_s:g} s {what}")
    finally:
        waiting.cancel()


# -- the three measurements -----------------------------------------------------------------------------------


async def measure_ceiling(base: Settings, *, policy_path: Path, n_posts: int = CEILING_POSTS,
                          batch_max_posts: int = CEILING_BATCH, console: Console | None = None,
                          records: Sequence[tuple[bytes, bytes]] | None = None) -> Run:
    """The worker with the zero-cost FakeClassifier on ``n_posts`` pre-produced posts (or on ``records``)."""
    say = _say(console)
    tag = new_tag("ceiling")
    settings = bench_settings(base, policy_path, tag=tag, batch_max_posts=batch_max_posts)
    taxonomy = load_policy(policy_path).taxonomy
    if records is None:
        records = post_records(tag, bench_texts(n_posts, seed=1, tag=tag))
    n_posts = len(records)
    async with scratch_topics(settings) as topics:
        say(f"  producing {n_posts:,} posts")
        await produce(settings, topics["posts"], records)
        probe = Probe.create()
        classifier = FakeClassifier((taxonomy.safe, *taxonomy.categories), safe=taxonomy.safe)
        say("  running the classify worker with the zero-cost classifier")
        async with running_worker(settings, probe, classifier) as worker:
            await watching(worker, probe.done.reach(n_posts), _JOIN_S + n_posts / 1000, "running the ceiling")
            run = probe.timed(n_posts, batch_max_posts)
        keys = await read_output_keys(settings, [topics["verdicts"], topics["adjudication"], topics["dead_letter"]],
                                      n_posts)
        check_outputs(keys, (key for key, _ in records), "ceiling")
    return run


async def measure_bare(base: Settings, *, policy_path: Path, records: Sequence[tuple[bytes, bytes]],
                       batch_max_posts: int = CEILING_BATCH, console: Console | None = None) -> Run:
    """The bare aiokafka loop (:func:`pipeline.bench.faust_ceiling.bare_loop`: getmany → orjson decode → trivial
    decision → one output per post → await the acks → commit) on ``records``, pre-produced, in this process, with
    clients built from the same settings as the worker's (acks=all, linger, fetch sizes and wait, group session),
    timed like the worker: from the first records fetched to the commit of the last post's output."""
    say = _say(console)
    tag = new_tag("bare")
    settings = bench_settings(base, policy_path, tag=tag, batch_max_posts=batch_max_posts)
    n_posts = len(records)
    async with scratch_topics(settings) as topics:
        say(f"  producing {n_posts:,} posts")
        await produce(settings, topics["posts"], records)
        consumed, done = Tally(), Tally()
        say("  running the bare aiokafka loop")
        consumer = make_consumer(settings, topics["posts"], group_id=settings.worker.group_id)
        producer = make_producer(settings)
        await start_client(producer, settings, "bare loop producer")
        try:
            await start_client(consumer, settings, "bare loop consumer")
            loop = asyncio.create_task(bare_loop(consumer, producer, topics["verdicts"], take=batch_max_posts,
                                                 within=settings.worker.batch_max_wait_ms / 1000,
                                                 on_fetched=consumed.add, on_done=done.add), name="bench-bare-loop")
            try:
                await watching(loop, done.reach(n_posts), _JOIN_S + n_posts / 1000, "running the bare loop")
            finally:
                loop.cancel()
                await asyncio.gather(loop, return_exceptions=True)
        finally:
            await consumer.stop()
            await producer.stop()
        run = _timed(consumed, done, n_posts, batch_max_posts)
        keys = await read_output_keys(settings, [topics["verdicts"]], n_posts)
        check_outputs(keys, (key for key, _ in records), "bare loop")
    return run


async def compare_limit(base: Settings, *, policy_path: Path, n_posts: int = CEILING_POSTS,
                        rounds: int = LIMIT_ROUNDS, console: Console | None = None) -> LimitComparison:
    """The bare loop and the worker's ceiling alternately (A B A B ...), ``rounds`` times each, on the same
    ``n_posts`` records (the same bytes, produced into fresh topics for every run)."""
    say = _say(console)
    tag = new_tag("limit")
    records = post_records(tag, bench_texts(n_posts, seed=1, tag=tag))
    bare: list[Run] = []
    worker: list[Run] = []
    for round_ in range(1, rounds + 1):
        say(f" round {round_} of {rounds}: bare aiokafka loop")
        freeze_startup_heap()  # as the worker does once it has started: both run on a frozen startup heap
        bare.append(await measure_bare(base, policy_path=policy_path, records=records, console=console))
        say(f"  {bare[-1].posts_per_s:,.0f} posts/s, {bare[-1].cpu_s_per_1k:.3f} CPU-s per 1,000 posts")
        say(f" round {round_} of {rounds}: classify worker, zero-cost classifier")
        worker.append(await measure_ceiling(base, policy_path=policy_path, records=records, console=console))
        say(f"  {worker[-1].posts_per_s:,.0f} posts/s, {worker[-1].cpu_s_per_1k:.3f} CPU-s per 1,000 posts")
    return LimitComparison(tuple(bare), tuple(worker))


async def measure_raw(settings: Settings, texts: Sequence[str], warmup: Sequence[str]) -> Run:
    """The worker's classifier called directly, chunk by chunk (``batch_max_posts`` each), after a warm-up."""
    chunk = settings.worker.batch_max_posts
    classifier = build_classifier(settings)
    try:
        await classifier.check()
        await classifier.classify(list(warmup))
        started = time.perf_counter()
        for start in range(0, len(texts), chunk):
            await classifier.classify(list(texts[start:start + chunk]))
        return Run(len(texts), time.perf_counter() - started, chunk)
    finally:
        await classifier.aclose()


def model_settings(base: Settings, policy_path: Path, server: ModelServer, *, tag: str) -> Settings:
    """:func:`bench_settings` (at the configured batch size) for the worker with the model: the vllm-http backend
    on ``server``."""
    settings = bench_settings(base, policy_path, tag=tag, batch_max_posts=base.worker.batch_max_posts)
    return settings.model_copy(update={"model": settings.model.model_copy(update={
        "backend": "vllm-http", "dir": server.info.path, "server_url": server.url})})


async def measure_worker(settings: Settings, tag: str, texts: Sequence[str], *, latency_s: float = 0.0,
                         console: Console | None = None) -> tuple[Run, Latency | None]:
    """``texts`` pre-produced (ids ``<tag>-<i>``) and through the classify worker built from ``settings``; then,
    when ``latency_s`` > 0, the latency at half that throughput into the same worker. Every post's output is
    read back: exactly one per post id."""
    say = _say(console)
    n_posts = len(texts)
    w = settings.worker
    records = post_records(tag, texts)
    latency = None
    async with scratch_topics(settings) as topics:
        await produce(settings, topics["posts"], records)
        probe = Probe.create()
        say(f"  pipeline: {n_posts:,} posts through the classify worker (batch {w.batch_max_posts}, "
            f"wait {w.batch_max_wait_ms} ms)")
        async with running_worker(settings, probe) as worker:
            await watching(worker, probe.done.reach(n_posts), _JOIN_S + n_posts / 10, "running the model pipeline")
            piped = probe.timed(n_posts, w.batch_max_posts)
            say(f"    {piped.posts_per_s:,.0f} posts/s")
            if latency_s > 0:
                rate = LATENCY_LOAD * piped.posts_per_s
                say(f"  latency: {rate:,.0f} posts/s offered for {latency_s:g} s")
                latency = await watching(worker, measure_latency(settings, rate_per_s=rate, duration_s=latency_s),
                                         latency_s + _DRAIN_S, "measuring latency")
        keys = await read_output_keys(settings, [topics["verdicts"], topics["adjudication"], topics["dead_letter"]],
                                      n_posts)
        check_outputs([k for k in keys if k.startswith(f"{tag}-".encode())], (k for k, _ in records), "pipeline")
    return piped, latency


async def measure_model(base: Settings, *, policy_path: Path, server: ModelServer, n_posts: int, latency_s: float,
                        console: Console | None = None) -> tuple[Run, Run, Latency]:
    """Raw backend vs pipeline on the same posts, then latency at half the pipeline's throughput."""
    say = _say(console)
    tag = new_tag("model")
    settings = model_settings(base, policy_path, server, tag=tag)
    texts = bench_texts(n_posts, seed=2, tag=tag)
    w = settings.worker
    say(f"  raw backend: {n_posts:,} posts in chunks of {w.batch_max_posts}")
    raw = await measure_raw(settings, texts, bench_texts(w.batch_max_posts, seed=3, tag=f"{tag}-warmup"))
    say(f"    {raw.posts_per_s:,.0f} posts/s")
    piped, latency = await measure_worker(settings, tag, texts, latency_s=latency_s, console=console)
    assert latency is not None  # latency_s > 0
    return raw, piped, latency


async def measure_stream(base: Settings, *, policy_path: Path, server: ModelServer, n_posts: int = MODEL_POSTS,
                         console: Console | None = None) -> Run:
    """The stream's throughput with the model: ``n_posts`` through the classify worker on ``server``, as the
    pipeline measurement of :func:`measure_model` (same posts, settings and timing), without raw or latency."""
    tag = new_tag("stream")
    settings = model_settings(base, policy_path, server, tag=tag)
    run, _ = await measure_worker(settings, tag, bench_texts(n_posts, seed=2, tag=tag), console=console)
    return run


async def measure_latency(settings: Settings, *, rate_per_s: float, duration_s: float) -> Latency:
    """Posts paced at ``rate_per_s`` into the running worker; receive time - created_at per post."""
    tag = new_tag("latency")
    n = max(1, round(rate_per_s * duration_s))
    texts = bench_texts(n, seed=4, tag=tag)
    topics = settings.topics.all()
    sent: dict[bytes, float] = {}
    received: dict[bytes, float] = {}
    all_received = asyncio.Event()
    receiver = asyncio.create_task(_receive(settings, [topics["verdicts"], topics["adjudication"]], tag, n,
                                            received, all_received), name="bench-latency-receiver")
    try:
        started = time.perf_counter()
        await _send_paced(settings, topics["posts"], tag, texts, rate_per_s, sent)
        seconds = time.perf_counter() - started
        await asyncio.wait_for(_until(all_received, receiver), _DRAIN_S)
    finally:
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
    ms = sorted((received[key] - sent[key]) * 1000 for key in sent)
    w = settings.worker
    return Latency(rate_per_s, n, seconds, percentile(ms, 50), percentile(ms, 99), ms[-1], w.batch_max_posts,
                   w.batch_max_wait_ms)


async def _until(event: asyncio.Event, task: asyncio.Task[None]) -> None:
    """Wait for ``event``; raise if ``task`` ends first."""
    waiting = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiting, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if waiting not in done:
        task.result()
        raise RuntimeError("the latency receiver stopped early")


async def _send_paced(settings: Settings, topic: str, tag: str, texts: Sequence[str], rate_per_s: float,
                      sent: dict[bytes, float]) -> None:
    """Send post ``i`` at ``i / rate_per_s`` seconds, ``created_at`` stamped from the clock at send time."""

    def paced() -> Iterable[tuple[bytes, bytes]]:
        for i, text in enumerate(texts):
            key, now = f"{tag}-{i}".encode(), time.time()  # stamped as send_all sends it
            sent[key] = now
            yield key, post_value(key.decode(), text, created_at=datetime.fromtimestamp(now, UTC))

    await produce_records(settings, topic, paced(), rate_per_s=rate_per_s, client="latency producer")


async def _receive(settings: Settings, topics: Sequence[str], tag: str, n: int, received: dict[bytes, float],
                   done: asyncio.Event) -> None:
    """Stamp the receive time of every output whose key starts with ``tag``; set ``done`` once ``n`` came."""
    prefix = f"{tag}-".encode()
    async with TopicReader.open(settings, topics, client="latency receiver",
                                fetch_max_wait_ms=_RECEIVER_FETCH_WAIT_MS) as reader:
        while len(received) < n:
            fetched = await reader.fetch(0.1)
            reader.messages.clear()
            now = time.time()
            for m in fetched:
                if m.key is not None and m.key.startswith(prefix):
                    received.setdefault(m.key, now)
        done.set()


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(len(sorted_values) * p / 100))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# -- the suite ------------------------------------------------------------------------------------------------


async def run_pipeline_bench(console: Console, *, model_dir: Path, policy_path: Path, settings: Settings | None = None,
                             ceiling_posts: int = CEILING_POSTS, model_posts: int = MODEL_POSTS,
                             latency_s: float = LATENCY_S, model_label: str | None = None) -> PipelineBenchResult:
    """All three measurements in one run. Uses ``settings.bootstrap`` when a broker is configured, else starts
    an embedded one; starts one model server on ``model_dir`` (a model directory). Everything it starts is
    stopped on the way out, also on Ctrl-C."""
    settings = settings or load_settings()
    load_before = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modcascade-bench-pipeline-")))
        base, broker = start_broker(settings, stack, scratch)
        console.print(f"pipeline ceiling against the bare aiokafka loop: {ceiling_posts:,} posts, batch "
                      f"{CEILING_BATCH}, {LIMIT_ROUNDS} rounds alternating (broker {broker})")
        limit = await compare_limit(base, policy_path=policy_path, n_posts=ceiling_posts, console=console)
        console.print(f"  worker / bare loop: {limit.ratio:.2f} (posts/s), CPU per post {limit.cpu_ratio:.2f} x")
        async with model_server(model_dir, base, scratch, console) as server:
            raw, piped, latency = await measure_model(base, policy_path=policy_path, server=server,
                                                      n_posts=model_posts, latency_s=latency_s, console=console)
    return PipelineBenchResult(limit=limit, raw=raw, pipeline=piped, latency=latency,
                               model=model_label or model_dir.name, broker=broker,
                               http_batch_size=base.model.batch_size, http_max_connections=http_max_connections(),
                               load_before=load_before)


def start_broker(settings: Settings, stack: contextlib.ExitStack, scratch: Path) -> tuple[Settings, str]:
    """The configured broker, or an embedded one started now (stopped by ``stack``): the settings to reach it,
    and its name for the report."""
    if not settings.uses_embedded_broker:
        return settings, settings.bootstrap
    broker = stack.enter_context(EmbeddedBroker.from_settings(settings.broker, port=0, log_path=scratch / "tansu.log"))
    updated = settings.model_copy(update={"broker": settings.broker.model_copy(update={"port": broker.port})})
    return updated, "embedded tansu"


@contextlib.asynccontextmanager
async def model_server(model_dir: Path, base: Settings, scratch: Path, console: Console) -> AsyncIterator[ModelServer]:
    """One vLLM server on ``model_dir`` (log in ``scratch``), started now, stopped on the way out (also when its
    start fails or is cancelled)."""
    server = ModelServer(model_dir, port=0, max_model_len=max(MAX_MODEL_LEN, base.model.max_length),
                         log_path=scratch / "vllm-server.log", reserved_cpus=base.model.server_reserved_cpus)
    try:
        console.print(f"starting a vLLM server on {server.model_name} (~40 s)")
        await start_model_server(server)
        yield server
    finally:
        server.stop()


async def start_model_server(server: ModelServer) -> None:
    """``server.start()`` in a thread. Cancelled (Ctrl-C), it waits for the start to end and stops the server,
    so no half-started server outlives the bench."""
    starting = asyncio.ensure_future(asyncio.to_thread(server.start))
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        await asyncio.wait({starting})
        server.stop()
        raise


def _say(console: Console | None) -> Callable[[str], None]:
    def say(line: str) -> None:
        if console is not None:
            console.print(line)

    return say


def http_max_connections() -> int:
    """The vllm-http classifier's connection limit as the worker builds it (its constructor's default)."""
    from pipeline.backends.vllm_http import VllmHttpClassifier

    default = inspect.signature(VllmHttpClassifier).parameters["max_connections"].default
    return int(default)


# -- the report -----------------------------------------------------------------------------------------------


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"


def render_markdown(result: PipelineBenchResult, *, machine: str, date: str) -> str:
    lim, r, p, lat = result.limit, result.raw, result.pipeline, result.latency
    runs = f"{lim.bare[0].posts:,} x {len(lim.bare)}" if lim.bare else "0"
    lines = [
        f"Machine: {machine}. Date: {date}. Broker: {result.broker}. Model: {result.model} on one vLLM server "
        f"(vllm-http, {result.http_batch_size} posts per request, {result.http_max_connections} connections). "
        f"Load average (1 min) when the run started: {result.load_before:.2f}.",
        "",
        "| measurement | posts | result | goal | met |",
        "|---|---:|---:|---|---|",
        f"| bare aiokafka loop: getmany → orjson decode → trivial decision → one output per post → acks → commit, "
        f"batch {CEILING_BATCH} | {runs} | {lim.bare_posts_per_s:,.0f} posts/s; {lim.bare_cpu_s_per_1k:.3f} CPU-s "
        "per 1,000 posts | | |",
        f"| pipeline ceiling: the classify worker, zero-cost classifier, batch {CEILING_BATCH} | {runs} | "
        f"{lim.worker_posts_per_s:,.0f} posts/s ({lim.ratio:.2f} x the bare loop); {lim.worker_cpu_s_per_1k:.3f} "
        f"CPU-s per 1,000 posts ({lim.cpu_ratio:.2f} x) | ≥ {LIMIT_RATIO_GOAL} x the bare loop; "
        f"≥ {CEILING_GOAL_POSTS_PER_S:,.0f} posts/s | {_yes(result.limit_met and result.ceiling_met)} |",
        f"| raw backend: `classify()` in chunks of {r.batch_max_posts} | {r.posts:,} | {r.posts_per_s:,.0f} posts/s "
        "| | |",
        f"| pipeline with the model: batch {p.batch_max_posts}, wait {lat.batch_max_wait_ms} ms | {p.posts:,} | "
        f"{p.posts_per_s:,.0f} posts/s ({result.ratio:.2f} x raw) | ≥ {RATIO_GOAL} x raw | {_yes(result.ratio_met)} |",
        f"| latency at {lat.offered_per_s:,.0f} posts/s offered ({LATENCY_LOAD:g} x pipeline), {lat.seconds:.0f} s "
        f"| {lat.posts:,} | p50 {lat.p50_ms:,.0f} ms, p99 {lat.p99_ms:,.0f} ms (max {lat.max_ms:,.0f}) | | |",
        "",
        "Method: all in one run on one machine (`modcascade bench --suites pipeline`, `pipeline/bench/pipeline.py`). "
        "The classify worker (`run_classify_worker`) runs in the bench process; posts are a seeded sample of the seed "
        "corpus with a unique suffix each, and the score cache is off. A run is timed from the worker's first "
        "consumed records (group join excluded) to the commit of the last post's output, and the output topics are "
        "then read back: exactly one output per post id. Ceiling: the zero-cost `FakeClassifier` on pre-produced "
        "posts, alternating with the bare aiokafka loop (bare, worker, bare, worker, ...; medians shown) on the same "
        "records, in the same process, with clients from the same settings (acks=all, linger, fetch sizes, commit "
        "after every output is acknowledged); CPU-s is this process's CPU time (`time.process_time`) over the timed "
        "span, so the broker's CPU is not in it. Raw vs pipeline: the same posts, once through "
        "`classifier.classify()` in consecutive chunks of the worker's batch size with the classifier the worker "
        "builds (same HTTP batch size and connections), once "
        "pre-produced and through the worker. Latency: posts paced at half the pipeline's throughput into the same "
        "worker, `created_at` stamped at send time, receive time taken by a consumer of verdicts + adjudication in "
        "the same process (batch settings as in the row above).",
    ]
    return "\n".join(lines) + "\n"
