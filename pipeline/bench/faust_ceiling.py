"""The faust-streaming ceiling: the best throughput faust can reach on our classify worker's hot path, measured
against a bare aiokafka loop doing the same work in the same run.

The hot path: consume JSON posts in batches (up to N posts or T seconds), do per-post work, publish one output
record per post with acks=all, and let the input offsets be committed only after every output of the batch is
acknowledged by the broker (at-least-once, nothing lost under SIGKILL). Per-post work here is zero-cost (decode
with :func:`pipeline.codec.loads`, build a small dict, :func:`pipeline.codec.dumps`), so the numbers are the
framework's overhead alone: an upper bound for a real worker.

    faust     an agent (concurrency=1) on ``stream.noack_take(2000, within=0.05)``, raw serializers, outputs
              sent through ``app.producer.send`` (all sends of a batch fired, then awaited together), then
              ``event.ack()`` for each post; faust commits the acked offsets on its commit interval.
    aiokafka  ``getmany(max_records=2000)`` → work → send all → gather the acks → ``commit()``.

Both run as their own subprocess (``python -m pipeline.bench.faust_ceiling worker ...``; faust.Worker owns its
event loop), one after the other, on the same pre-produced input topic with a fresh consumer group and a fresh
output topic each. Each worker times itself: steady-state posts/s = posts completed after its first batch /
time from the end of its first batch to the end of its last (the first fetch and the group join are excluded
for both). The parent then checks that the output topic holds exactly one record per post.

    python -m pipeline.bench.faust_ceiling                       # starts an embedded broker
    python -m pipeline.bench.faust_ceiling --bootstrap HOST:PORT --posts 50000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline import codec
from pipeline.errors import DecodeError
from pipeline.kafka import ensure_topics, make_consumer, make_producer
from pipeline.kafka.clients import faust_credentials
from pipeline.kafka.readback import produce, read_to_end
from pipeline.settings import Settings, load_settings

Engine = Literal["faust", "aiokafka"]
SendVia = Literal["producer", "topic"]

BATCH_MAX = 2000  # posts per batch (faust: noack_take max; aiokafka: getmany max_records)
BATCH_WITHIN_S = 0.05  # faust: noack_take within; aiokafka: getmany timeout
PARTITIONS = 4
LINGER_MS = 5  # our producers' linger (MODCASCADE_KAFKA_LINGER_MS default); faust's own default is 0
FAUST_BUFFER_MAXSIZE = 100_000
_WORKER_TIMEOUT_BASE_S = 90.0  # import + group join (faust: ~4-5 s on tansu with the short timeouts below)
_STOP_GRACE_S = 15.0


@dataclass(frozen=True)
class WorkerResult:
    """What one worker run reports about itself."""

    engine: str
    posts: int  # posts it processed in total
    steady_posts: int  # posts completed after its first batch
    steady_s: float  # from the end of its first batch to the end of its last
    batches: int
    startup_s: float  # from process start to the end of its first batch (imports, group join, first fetch)
    steady_cpu_s: float = 0.0  # the worker process's CPU time (user + system) over the steady window

    @property
    def posts_per_cpu_s(self) -> float:
        """Posts per CPU second of the worker: less sensitive than posts/s to other load on the machine."""
        return self.steady_posts / self.steady_cpu_s if self.steady_cpu_s > 0 else 0.0

    @property
    def posts_per_s(self) -> float:
        return self.steady_posts / self.steady_s if self.steady_s > 0 else 0.0


@dataclass(frozen=True)
class FaustCeiling:
    """Best-case faust throughput on our hot path against a bare aiokafka loop, posts/s (medians of runs)."""

    faust_posts_per_s: float
    aiokafka_posts_per_s: float
    ratio: float  # aiokafka / faust: how many times faster the bare loop is
    n_posts: int
    notes: tuple[str, ...] = field(default_factory=tuple)


# -- the per-post work (identical for both engines) ------------------------------------------------------------


def work(value: bytes) -> bytes:
    """Zero-cost stand-in for classification: decode the post, build a small verdict, encode it."""
    try:
        post = codec.loads(value)
        if not isinstance(post, dict):
            raise DecodeError("not_an_object", "expected a JSON object")
    except DecodeError as exc:
        return codec.dumps({"error": exc.reason})
    return codec.dumps({"post_id": post.get("id"), "label": "allow", "score": 0.0,
                        "chars": len(str(post.get("text", "")))})


def make_post(i: int) -> tuple[bytes, bytes]:
    """(key, value) of benchmark post ``i``: a short, realistic JSON post."""
    post_id = f"post-{i:08d}"
    text = f"post number {i}: just sharing what I had for lunch today, nothing to see here #{i % 97}"
    value = codec.dumps({"id": post_id, "author": f"user-{i % 1000}", "text": text, "lang": "en"})
    return post_id.encode(), value


# -- workers (each runs in its own process) --------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerArgs:
    engine: Engine
    bootstrap: str
    in_topic: str
    out_topic: str
    group: str
    expect: int  # report once this many posts are processed (0: never)
    result: Path | None
    take: int = BATCH_MAX
    within: float = BATCH_WITHIN_S
    send_via: SendVia = "producer"
    linger_ms: int = LINGER_MS
    # faust's stream_buffer_maxsize (default 4096). When a topic's buffer passes maxsize/1.25 faust stops fetching
    # its partitions, and with no active partition left its fetcher sleeps a whole second: a big buffer avoids it.
    buffer_maxsize: int = FAUST_BUFFER_MAXSIZE
    batch_delay_ms: float = 0.0  # simulated per-batch work (e.g. a classifier call) before the sends
    datadir: Path | None = None
    log: Path | None = None


class _Clock:
    """Steady-state timing shared by both workers."""

    def __init__(self, engine: str, expect: int, result: Path | None) -> None:
        self.engine, self.expect, self.result = engine, expect, result
        self.process_start = time.perf_counter()
        self.first_done: float | None = None
        self.first_cpu = 0.0
        self.first_posts = 0
        self.posts = 0
        self.batches = 0
        self.reported = False

    def batch_done(self, n: int) -> None:
        now = time.perf_counter()
        self.posts += n
        self.batches += 1
        if self.first_done is None:
            self.first_done, self.first_posts, self.first_cpu = now, n, time.process_time()
        if self.expect and not self.reported and self.posts >= self.expect:
            self.reported = True
            first = self.first_done
            outcome = WorkerResult(self.engine, self.posts, self.posts - self.first_posts, now - first,
                                   self.batches, first - self.process_start, time.process_time() - self.first_cpu)
            if self.result is not None:
                tmp = self.result.with_suffix(".tmp")
                tmp.write_bytes(codec.dumps(outcome.__dict__))
                tmp.replace(self.result)  # atomic: the parent never reads half a file


def _settings(bootstrap: str, linger_ms: int = LINGER_MS) -> Settings:
    """Settings for ``bootstrap`` with idempotence off (tansu rejects InitProducerId) and acks=all."""
    base = Settings()
    kafka = base.kafka.model_copy(update={"bootstrap": bootstrap, "idempotence": False, "acks": "all",
                                          "linger_ms": linger_ms})
    return base.model_copy(update={"kafka": kafka})


async def run_aiokafka_worker(args: WorkerArgs) -> None:
    """The bare loop: getmany → work → send all → gather the acks → commit. Runs until cancelled."""
    clock = _Clock("aiokafka", args.expect, args.result)
    settings = _settings(args.bootstrap, args.linger_ms)
    consumer = make_consumer(settings, args.in_topic, group_id=args.group,
                             session_timeout_ms=6000, heartbeat_interval_ms=1000, rebalance_timeout_ms=5000)
    producer = make_producer(settings)
    await producer.start()
    try:
        await consumer.start()
        try:
            await bare_loop(consumer, producer, args.out_topic, take=args.take, within=args.within,
                            on_done=clock.batch_done, batch_delay_ms=args.batch_delay_ms)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()


async def bare_loop(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, out_topic: str, *, take: int,
                    within: float, on_done: Callable[[int], None],
                    on_fetched: Callable[[int], None] | None = None, batch_delay_ms: float = 0.0) -> None:
    """The bare aiokafka loop on started clients: getmany → :func:`work` per post → send all → gather the acks →
    commit; ``on_fetched(n)`` once a batch of ``n`` records is fetched, ``on_done(n)`` once it is committed. Runs
    until cancelled. The pipeline bench (``pipeline/bench/pipeline.py``) runs it in-process beside the worker."""
    while True:  # at least 1 ms: a zero timeout with nothing fetched would spin without yielding to the fetcher
        batches = await consumer.getmany(timeout_ms=max(1, int(within * 1000)), max_records=take)
        records = [r for rs in batches.values() for r in rs]
        if not records:
            continue
        if on_fetched is not None:
            on_fetched(len(records))
        if batch_delay_ms:
            await asyncio.sleep(batch_delay_ms / 1000)
        sends = [await producer.send(out_topic, work(r.value), key=r.key) for r in records]
        await asyncio.gather(*sends)
        await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batches.items() if rs})
        on_done(len(records))


def run_faust_worker(args: WorkerArgs) -> None:
    """The faust pattern: noack_take → work → fire all sends → await them together → ack each event.
    Blocks until the process is stopped (SIGTERM/SIGINT); faust.Worker owns the event loop."""
    import faust

    clock = _Clock("faust", args.expect, args.result)
    own_datadir = args.datadir is None
    datadir = args.datadir or Path(tempfile.mkdtemp(prefix="faust-ceiling-"))
    app = faust.App(
        args.group,  # the app id is also the consumer group
        broker=f"kafka://{args.bootstrap}",
        broker_credentials=faust_credentials(load_settings().kafka),  # SASL/TLS like every other client
        store="memory://",
        datadir=str(datadir),
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        producer_acks=-1,  # acks=all, explicitly (faust's default too); idempotence stays off (aiokafka default)
        producer_linger=args.linger_ms / 1000,
        stream_buffer_maxsize=args.buffer_maxsize,
        consumer_auto_offset_reset="earliest",
        topic_partitions=PARTITIONS,
        topic_replication_factor=1,
        # Join in seconds on tansu (faust's defaults wait ~30 s for the first rebalance).
        broker_rebalance_timeout=5,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
    )
    source = app.topic(args.in_topic, key_type=bytes, value_type=bytes)
    sink = app.topic(args.out_topic, key_type=bytes, value_type=bytes)
    out_topic, take, within, send_via = args.out_topic, args.take, args.within, args.send_via
    delay_s = args.batch_delay_ms / 1000

    async def classify(stream: Any) -> None:
        async for events in stream.noack_take(take, within=within):
            if delay_s:
                await asyncio.sleep(delay_s)
            if send_via == "producer":
                producer = app.producer
                sends = [await producer.send(out_topic, e.key, work(e.value), None, None, None) for e in events]
            else:
                sends = [await sink.send(key=e.key, value=work(e.value)) for e in events]
            await asyncio.gather(*sends)
            for event in events:
                event.ack()
            clock.batch_done(len(events))

    app.agent(source, concurrency=1, name="classify")(classify)
    worker = faust.Worker(app, loglevel="warn", logfile=str(args.log) if args.log else None, quiet=True,
                          redirect_stdouts=False, workdir=str(datadir))
    # At loglevel warn or above faust.Worker installs a terminal spinner that sets the root logger to DEBUG, so
    # every debug call on the hot path (aiokafka logs one per send) builds a LogRecord: drop the spinner.
    worker.spinner = None
    try:
        worker.execute_from_commandline()  # raises SystemExit when the worker stops
    finally:
        if own_datadir:
            shutil.rmtree(datadir, ignore_errors=True)


# -- the parent: topics, posts, runs ---------------------------------------------------------------------------


async def produce_posts(settings: Settings, topic: str, n: int) -> None:
    """Produce ``n`` posts to ``topic`` (acks=all) and wait for every ack."""
    await produce(settings, topic, map(make_post, range(n)), client="bench producer")


async def read_keys(settings: Settings, topic: str) -> list[bytes]:
    """The keys of every record in ``topic`` (read to its end by high watermark, as tansu's end offsets
    under-count; see :mod:`pipeline.kafka.readback`)."""
    return [m.key or b"" for m in await read_to_end(settings, [topic], client="bench output reader")]


def worker_command(args: WorkerArgs) -> list[str]:
    command = [sys.executable, "-m", "pipeline.bench.faust_ceiling", "worker", "--engine", args.engine,
               "--bootstrap", args.bootstrap, "--in", args.in_topic, "--out", args.out_topic, "--group", args.group,
               "--expect", str(args.expect), "--take", str(args.take), "--within", str(args.within),
               "--send-via", args.send_via, "--linger-ms", str(args.linger_ms),
               "--buffer-maxsize", str(args.buffer_maxsize), "--batch-delay-ms", str(args.batch_delay_ms)]
    for flag, path in (("--result", args.result), ("--datadir", args.datadir), ("--log", args.log)):
        if path is not None:
            command += [flag, str(path)]
    return command


async def stop_process(process: asyncio.subprocess.Process, grace_s: float = _STOP_GRACE_S) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; always reaps."""
    if process.returncode is None:
        try:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), grace_s)
        except ProcessLookupError:
            pass
        except TimeoutError:
            process.kill()
    await process.wait()


async def run_worker(args: WorkerArgs, scratch: Path) -> WorkerResult:
    """Run one worker subprocess until it reports ``args.expect`` posts, then stop it."""
    assert args.result is not None
    log = args.log or scratch / f"{args.group}.log"
    with open(log, "ab") as out:
        process = await asyncio.create_subprocess_exec(
            *worker_command(args), stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
            cwd=str(scratch))
    try:
        deadline = time.monotonic() + _WORKER_TIMEOUT_BASE_S + args.expect / 1000
        while not args.result.exists():
            if process.returncode is not None or time.monotonic() > deadline:
                tail = log.read_text("utf-8", errors="replace")[-3000:]
                raise RuntimeError(f"{args.engine} worker did not finish (exit code {process.returncode}); "
                                   f"its log:\n{tail}")
            await asyncio.sleep(0.05)
        data = json.loads(args.result.read_bytes())
        return WorkerResult(**data)
    finally:
        await stop_process(process)


async def measure_async(bootstrap: str, n_posts: int = 50_000, *, runs: int = 3,
                        engines: Sequence[Engine] = ("aiokafka", "faust"),
                        **variant: Any) -> dict[str, list[WorkerResult]]:
    """Every engine ``runs`` times (interleaved) on the same ``n_posts`` posts; ``variant`` overrides
    :class:`WorkerArgs` fields (take, within, send_via, linger_ms, buffer_maxsize)."""
    settings = _settings(bootstrap)
    tag = uuid.uuid4().hex[:8]
    in_topic = f"faust-ceiling-{tag}-posts"
    outs = {(engine, run): f"faust-ceiling-{tag}-{engine}-{run}" for run in range(runs) for engine in engines}
    await ensure_topics(settings, [in_topic, *outs.values()], PARTITIONS)
    await produce_posts(settings, in_topic, n_posts)
    results: dict[str, list[WorkerResult]] = {engine: [] for engine in engines}
    with tempfile.TemporaryDirectory(prefix="faust-ceiling-") as tmp:
        scratch = Path(tmp)
        for run in range(runs):
            for engine in engines:
                out_topic = outs[(engine, run)]
                datadir = scratch / f"{engine}-{run}-data"
                datadir.mkdir()
                args = WorkerArgs(engine=engine, bootstrap=bootstrap, in_topic=in_topic, out_topic=out_topic,
                                  group=f"{out_topic}-group", expect=n_posts,
                                  result=scratch / f"{engine}-{run}.json", datadir=datadir, **variant)
                result = await run_worker(args, scratch)
                keys = await read_keys(settings, out_topic)
                if len(keys) != n_posts or len(set(keys)) != n_posts:
                    raise RuntimeError(f"{engine} run {run}: {len(keys)} output records ({len(set(keys))} "
                                       f"distinct posts) for {n_posts} posts")
                results[engine].append(result)
    return results


def measure(bootstrap: str, n_posts: int = 50_000, *, runs: int = 3) -> FaustCeiling:
    """Best-case faust throughput on our hot path vs a bare aiokafka loop (medians of ``runs`` each)."""
    results = asyncio.run(measure_async(bootstrap, n_posts, runs=runs))
    faust_rate = statistics.median(r.posts_per_s for r in results["faust"])
    aio_rate = statistics.median(r.posts_per_s for r in results["aiokafka"])

    def rates(engine: str) -> str:
        return ", ".join(f"{r.posts_per_s:,.0f}" for r in results[engine])

    def per_cpu(engine: str) -> float:
        return statistics.median(r.posts_per_cpu_s for r in results[engine])

    notes = (
        f"{runs} run(s) each, interleaved, median reported; posts/s = steady state after the first batch",
        f"faust runs: {rates('faust')} posts/s; aiokafka runs: {rates('aiokafka')} posts/s",
        f"per CPU second of the worker process (robust to other load): faust {per_cpu('faust'):,.0f}, "
        f"aiokafka {per_cpu('aiokafka'):,.0f} posts/cpu-s",
        f"faust: agent concurrency=1, noack_take({BATCH_MAX}, within={BATCH_WITHIN_S}), raw serializers, "
        f"app.producer.send for every post then gather, then event.ack(); acks=all, linger {LINGER_MS} ms, "
        f"stream_buffer_maxsize={FAUST_BUFFER_MAXSIZE}; offsets committed by faust on its commit interval (not timed)",
        f"aiokafka: getmany(max_records={BATCH_MAX}), send all, gather, commit (timed); acks=all, "
        f"linger {LINGER_MS} ms",
        "every output topic checked to hold exactly one record per post",
    )
    return FaustCeiling(faust_posts_per_s=faust_rate, aiokafka_posts_per_s=aio_rate,
                        ratio=aio_rate / faust_rate if faust_rate else float("inf"), n_posts=n_posts, notes=notes)


# -- CLI -------------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench.faust_ceiling", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    bench = sub.add_parser("measure", help="measure faust vs aiokafka (the default)")
    for p in (parser, bench):
        p.add_argument("--bootstrap", default=None, help="host:port; default: start an embedded broker")
        p.add_argument("--posts", type=int, default=50_000)
        p.add_argument("--runs", type=int, default=3)
    worker = sub.add_parser("worker", help="one worker process (started by measure)")
    worker.add_argument("--engine", choices=["faust", "aiokafka"], required=True)
    worker.add_argument("--bootstrap", required=True)
    worker.add_argument("--in", dest="in_topic", required=True)
    worker.add_argument("--out", dest="out_topic", required=True)
    worker.add_argument("--group", required=True)
    worker.add_argument("--expect", type=int, default=0)
    worker.add_argument("--result", type=Path, default=None)
    worker.add_argument("--take", type=int, default=BATCH_MAX)
    worker.add_argument("--within", type=float, default=BATCH_WITHIN_S)
    worker.add_argument("--send-via", choices=["producer", "topic"], default="producer")
    worker.add_argument("--linger-ms", type=int, default=LINGER_MS)
    worker.add_argument("--buffer-maxsize", type=int, default=FAUST_BUFFER_MAXSIZE)
    worker.add_argument("--batch-delay-ms", type=float, default=0.0)
    worker.add_argument("--datadir", type=Path, default=None)
    worker.add_argument("--log", type=Path, default=None)
    return parser


def _worker_main(ns: argparse.Namespace) -> None:
    names = set(WorkerArgs.__dataclass_fields__)
    fields = {k: v for k, v in vars(ns).items() if k in names}
    args = WorkerArgs(**fields)
    if args.engine == "faust":
        run_faust_worker(args)
        return
    loop = asyncio.new_event_loop()
    task = loop.create_task(run_aiokafka_worker(args))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    finally:
        loop.close()


def main(argv: Sequence[str] | None = None) -> None:
    ns = _parser().parse_args(argv)
    if ns.command == "worker":
        _worker_main(ns)
        return
    if ns.bootstrap is not None:
        result = measure(ns.bootstrap, ns.posts, runs=ns.runs)
    else:
        from pipeline.kafka import EmbeddedBroker

        with EmbeddedBroker(host="127.0.0.1", port=0) as broker:
            result = measure(broker.bootstrap, ns.posts, runs=ns.runs)
    print(f"faust     {result.faust_posts_per_s:>10,.0f} posts/s")
    print(f"aiokafka  {result.aiokafka_posts_per_s:>10,.0f} posts/s")
    print(f"ratio     {result.ratio:>10.1f}x  (aiokafka / faust, {result.n_posts:,} posts)")
    for note in result.notes:
        print(f"  - {note}")


if __name__ == "__main__":
    main()
