"""Reliability under chaos: the workers as separate processes, SIGKILLed at random, and an exact account of what
came out, post by post.

    inputs     N records (default 50,000) on ``posts`` in a seeded random order: valid posts of a few bytes to
               ~16 kB, M malformed records (default 300: empty, cut-off JSON, not an object, no id, blank text,
               invalid UTF-8, binary noise, text over ``max_text_bytes``) and, among the malformed ones, one
               record per size of ``large_mb`` (default 0.5, 1, 2 and 5 MB: a post whose text is that long, or
               binary noise of that size). Each record is keyed: ``<tag>-<i>`` for a valid post (its id),
               ``bad-<tag>-<i>`` for a malformed one (its dead letter's ``original_key``).
    workers    W classify workers (default 2; ``modcascade worker classify`` on one vLLM server, ``ModelServer``,
               or with ``backend="fake"`` this module's ``classify-fake`` entry: the same service with the
               zero-cost ``FakeClassifier``) and one adjudicate worker (``modcascade worker adjudicate``) when a
               frontier URL is given (an Anthropic-compatible endpoint: the tests' scripted server, via
               ``python -m tests.support.reliability``). Each is a process of its own, as deployed.
    chaos      K kills (default 20), seeded: kill ``i`` waits until the share of inputs accounted for reaches
               ``0.9 (i + u) / K`` (u uniform in [0.3, 1)) and at least ``min_gap_s`` passed since the last one,
               then SIGKILLs a worker picked at random and starts it again at once. A worker that exits on its
               own is restarted too, and counted as a crash.
    the end    once every input is accounted for (or nothing new came for ``stall_s``), the workers are stopped
               with SIGTERM and every output topic (verdicts, adjudication, dead-letter, labels) is read
               completely, to the high watermark.

What is counted, from the complete read:

    lost                    valid posts with neither a final verdict nor a dead letter, plus malformed records
                            without a dead letter (without adjudication, an adjudication request counts as the
                            post's outcome, and the report says so)
    dead letters            malformed inputs dead-lettered at least once (must be all of them) and exactly once;
                            valid posts dead-lettered (a post whose output could not be published)
    duplicates              per topic, records beyond the first for the same id: verdicts by ``post_id``,
                            adjudication requests by post id, dead letters by ``original_key``, labels by
                            ``post_id``; ``conflicting``: posts whose verdicts disagree on the decision
    after the last kill     of those duplicates, the ones whose record timestamp (the producer's clock, this
                            machine's) is later than the last SIGKILL: replays the last kill caused, and any a
                            worker made without a kill (there should be none beyond one batch per kill)
    elapsed                 from the first worker start to the moment the last input was accounted for
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from pipeline import codec
from pipeline.bench.pipeline import bench_settings, bench_texts, model_server, new_tag, scratch_topics, start_broker
from pipeline.bench.reliability_report import (
    Kill,
    ReliabilityResult,
    account,
    ending_roles,
    output_id,
)
from pipeline.errors import ConfigError
from pipeline.kafka.readback import TopicReader, produce, read_to_end
from pipeline.settings import Settings, load_settings

Backend = Literal["model", "fake"]

POSTS = 50_000
KILLS = 20
MALFORMED = 300
LARGE_MB: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)
SEED = 0
CLASSIFY_WORKERS = 2
MIN_GAP_S = 3.0
STALL_S = 180.0

FAKE_ENTRY = "classify-fake"
"""``python -m pipeline.bench.reliability classify-fake``: the classify service with the zero-cost classifier."""
FRONTIER_KEY = "reliability-bench"
"""The API key the adjudicate worker sends to the frontier URL (a local scripted server ignores it)."""

_KILL_LOW, _KILL_SPAN = 0.3, 0.7  # where in its share of the stream a kill may land
_KILL_BEFORE = 0.9  # every kill is scheduled before this share of the inputs is accounted for
_QUIET_S = 3.0  # after the last input is accounted for: late duplicates still arrive
_STOP_S = 60.0  # SIGTERM → a worker finishes its batch and exits
_POLL_S = 0.5
_LONG_POST_SHARE = 0.05  # valid posts padded to a few kB


# -- options and inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChaosOptions:
    posts: int = POSTS
    """Records in all, malformed ones included."""
    kills: int = KILLS
    seed: int = SEED
    malformed: int = MALFORMED
    """Malformed records, the large ones included."""
    large_mb: tuple[float, ...] = LARGE_MB
    classify_workers: int = CLASSIFY_WORKERS
    backend: Backend = "model"
    frontier_url: str | None = None
    """An Anthropic-compatible endpoint for the adjudicate worker; None: no adjudication (said in the report)."""
    rate_per_s: float = 0.0
    """Posts published per second while the workers run; 0: all published before they start."""
    min_gap_s: float = MIN_GAP_S
    stall_s: float = STALL_S

    def check(self) -> None:
        if self.posts < 1 or self.kills < 0 or self.classify_workers < 1:
            raise ConfigError("the reliability bench needs posts >= 1, kills >= 0 and classify workers >= 1")
        if not len(self.large_mb) <= self.malformed < self.posts:
            raise ConfigError(f"malformed records ({self.malformed}) must be at least the large ones "
                              f"({len(self.large_mb)}) and fewer than the posts ({self.posts})")


@dataclass(frozen=True)
class Inputs:
    records: list[tuple[bytes, bytes]]
    valid: frozenset[str]
    malformed: frozenset[str]

    @property
    def keys(self) -> frozenset[str]:
        return self.valid | self.malformed

    @property
    def smallest(self) -> int:
        return min(len(value) for _, value in self.records)

    @property
    def largest(self) -> int:
        return max(len(value) for _, value in self.records)


def make_inputs(options: ChaosOptions, tag: str, *, max_text_bytes: int) -> Inputs:
    """The seeded records of a run (see the module docstring), shuffled."""
    rng = random.Random(options.seed)
    n_valid = options.posts - options.malformed
    texts = bench_texts(n_valid, seed=options.seed, tag=tag)
    records: list[tuple[bytes, bytes]] = []
    valid: set[str] = set()
    for i, text in enumerate(texts):
        if rng.random() < _LONG_POST_SHARE:  # a few kB, under the text limit
            text = (text + " ") * (rng.randrange(256, max_text_bytes // 2) // (len(text) + 1) + 1)
        post_id = f"{tag}-{i}"
        records.append((post_id.encode(), codec.dumps({"id": post_id, "text": text, "lang": "en"})))
        valid.add(post_id)
    malformed: set[str] = set()
    for j in range(options.malformed):
        key = f"bad-{tag}-{j}"
        large = options.large_mb[j] if j < len(options.large_mb) else None
        value = (_large_value(key, int(large * 2**20), rng) if large is not None
                 else _malformed_value(key, j, rng, max_text_bytes))
        records.append((key.encode(), value))
        malformed.add(key)
    rng.shuffle(records)
    return Inputs(records, frozenset(valid), frozenset(malformed))


def _malformed_value(key: str, j: int, rng: random.Random, max_text_bytes: int) -> bytes:
    kinds = (
        lambda: b"",
        lambda: b'{"id": "' + key.encode() + b'", "text": "cut off',
        lambda: b"[1, 2, 3]",
        lambda: codec.dumps({"text": "a post without an id"}),
        lambda: codec.dumps({"id": key, "text": "   "}),
        lambda: b'{"id": "' + key.encode() + b'", "text": "\xff\xfe\xfd"}',
        lambda: rng.randbytes(rng.randrange(1, 4096)),
        lambda: codec.dumps({"id": key, "text": "x" * rng.randrange(max_text_bytes + 1, 4 * max_text_bytes)}),
    )
    return kinds[j % len(kinds)]()


def _large_value(key: str, size: int, rng: random.Random) -> bytes:
    """A post whose text makes the record ``size`` bytes (over any text limit), or binary noise of that size."""
    if rng.random() < 0.5:
        return rng.randbytes(size)
    head = codec.dumps({"id": key, "text": ""})[:-2]  # up to the text's opening quote
    return head + b"y" * max(0, size - len(head) - 2) + b'"}'


# -- worker processes -----------------------------------------------------------------------------------------


def worker_environment(settings: Settings, options: ChaosOptions, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without our own settings (security ones pass through), plus the run's settings as
    ``MODCASCADE_*`` variables."""
    keep = ("MODCASCADE_KAFKA_SASL", "MODCASCADE_KAFKA_SSL", "MODCASCADE_KAFKA_SECURITY")
    env = {k: v for k, v in environ.items() if not k.startswith("MODCASCADE_") or k.startswith(keep)}
    env.pop("ANTHROPIC_API_KEY", None)  # never the real API from a chaos run
    k, w, m, a = settings.kafka, settings.worker, settings.model, settings.adjudicator
    env.update({
        "PYTHONUNBUFFERED": "1",
        "MODCASCADE_KAFKA_BOOTSTRAP": settings.bootstrap,
        "MODCASCADE_KAFKA_IDEMPOTENCE": str(settings.idempotence).lower(),
        "MODCASCADE_KAFKA_SESSION_TIMEOUT_MS": str(k.session_timeout_ms),
        "MODCASCADE_KAFKA_HEARTBEAT_INTERVAL_MS": str(k.heartbeat_interval_ms),
        "MODCASCADE_TOPIC_PREFIX": settings.topics.prefix,
        "MODCASCADE_WORKER_GROUP_ID": w.group_id,
        "MODCASCADE_WORKER_BATCH_MAX_POSTS": str(w.batch_max_posts),
        "MODCASCADE_WORKER_CACHE_ENTRIES": str(w.cache_entries),
        "MODCASCADE_MODEL_DIR": str(m.dir),
        "MODCASCADE_MODEL_SERVER_URL": m.server_url,
        "MODCASCADE_MODEL_MAX_LENGTH": str(m.max_length),
        "MODCASCADE_MAX_TEXT_BYTES": str(settings.max_text_bytes),
        "MODCASCADE_POLICY_PATH": str(settings.policy_path.resolve()),
        "MODCASCADE_METRICS_PORT": "0",
        "MODCASCADE_ADJUDICATOR_GROUP_ID": a.group_id,
    })
    if options.frontier_url is not None:
        env.update({
            "MODCASCADE_ANTHROPIC_API_KEY": FRONTIER_KEY,
            "MODCASCADE_ADJUDICATOR_BASE_URL": options.frontier_url,
            # a local endpoint: the limits that protect a paid API only slow the run down
            "MODCASCADE_ADJUDICATOR_RATE_PER_S": "1000",
            "MODCASCADE_ADJUDICATOR_BURST": "200",
            "MODCASCADE_ADJUDICATOR_CONCURRENCY": "32",
            "MODCASCADE_ADJUDICATOR_BACKOFF_BASE_S": "0.2",
            "MODCASCADE_ADJUDICATOR_BACKOFF_MAX_S": "2",
        })
    return env


def worker_command(role: str, backend: Backend) -> list[str]:
    if role == "classify" and backend == "fake":
        return [sys.executable, "-m", "pipeline.bench.reliability", FAKE_ENTRY]
    return [sys.executable, "-m", "pipeline.cli", "worker", role]


@dataclass
class WorkerSlot:
    """One worker, restarted in place: ``classify-0``, ``adjudicate-0``, ..."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        with self.log.open("ab") as sink:
            sink.write(f"--- start {self.starts + 1} at {time.time():.3f}\n".encode())
            sink.flush()
            self.process = subprocess.Popen(self.command, env=self.env, stdout=sink, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=Path.cwd())
        self.starts += 1

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.process.wait)

    async def terminate(self, timeout_s: float = _STOP_S) -> int | None:
        """SIGTERM; SIGKILL after ``timeout_s``. The exit code of a graceful stop, None when it had to be killed."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return await asyncio.to_thread(self.process.wait, timeout_s)
        except subprocess.TimeoutExpired:
            await self.kill()
            return None

    def last_line(self) -> str:
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1][:200] if lines else ""


# -- following the outputs ------------------------------------------------------------------------------------


@dataclass
class Progress:
    """Inputs accounted for so far, as the outputs arrive (a live view; the report uses the complete read)."""

    keys: frozenset[str]
    done: set[str] = field(default_factory=set)
    last_change: float = field(default_factory=time.monotonic)
    completed_at: float | None = None

    @property
    def share(self) -> float:
        return len(self.done) / len(self.keys)

    def add(self, key: str | None) -> None:
        if key is not None and key in self.keys and key not in self.done:
            self.done.add(key)
            self.last_change = time.monotonic()
            if len(self.done) == len(self.keys):
                self.completed_at = time.monotonic()


async def follow(settings: Settings, progress: Progress, adjudicating: bool) -> None:
    """Tally ``progress`` from the outputs until cancelled."""
    topics = settings.topics.all()
    roles = {topics[role]: role for role in ending_roles(adjudicating)}
    async with TopicReader.open(settings, list(roles), client="reliability follower") as reader:
        while True:
            for m in await reader.fetch(_POLL_S):
                progress.add(output_id(roles[m.topic], m.value or b""))
            reader.messages.clear()


# -- the run --------------------------------------------------------------------------------------------------


def kill_schedule(kills: int, rng: random.Random) -> list[float]:
    """The share of inputs accounted for at which each kill may happen (see the module docstring)."""
    return [_KILL_BEFORE * (i + _KILL_LOW + _KILL_SPAN * rng.random()) / kills for i in range(kills)]


async def run_chaos(settings: Settings, options: ChaosOptions, *, scratch: Path, console: Console | None = None,
                    broker: str = "", backend_label: str | None = None) -> ReliabilityResult:
    """One run on the broker of ``settings`` (running), with a model server at ``settings.model.server_url`` when
    ``options.backend`` is "model"; topics and consumer groups of its own. See the module docstring."""
    options.check()

    def say(line: str) -> None:
        if console is not None:
            console.print(line)

    load_before = os.getloadavg()[0]
    tag = new_tag("chaos")
    settings = bench_settings(settings, settings.policy_path, tag=tag, batch_max_posts=settings.worker.batch_max_posts)
    settings = settings.model_copy(update={"adjudicator": settings.adjudicator.model_copy(
        update={"group_id": f"{tag}-adjudicate"})})
    inputs = make_inputs(options, tag, max_text_bytes=settings.max_text_bytes)
    adjudicating = options.frontier_url is not None
    rng = random.Random(options.seed + 1)
    async with scratch_topics(settings) as topics:
        def publish_all() -> Coroutine[Any, Any, int]:
            return produce(settings, topics["posts"], inputs.records, rate_per_s=options.rate_per_s or None,
                           client="reliability producer", max_request_size=inputs.largest + 2**20)

        say(f"  publishing {len(inputs.records):,} records ({len(inputs.malformed):,} malformed, "
            f"{inputs.smallest:,} B to {inputs.largest / 2**20:.1f} MB)"
            + (f" at {options.rate_per_s:g}/s while the workers run" if options.rate_per_s else ""))
        if not options.rate_per_s:
            await publish_all()
        env = worker_environment(settings, options, os.environ)
        slots = [WorkerSlot(f"classify-{i}", worker_command("classify", options.backend), env,
                            scratch / f"{tag}-classify-{i}.log") for i in range(options.classify_workers)]
        if adjudicating:
            slots.append(WorkerSlot("adjudicate-0", worker_command("adjudicate", options.backend), env,
                                    scratch / f"{tag}-adjudicate-0.log"))
        else:
            say("  no frontier URL: no adjudicate worker; an adjudication request counts as a post's outcome")
        progress = Progress(inputs.keys)
        kills: list[Kill] = []
        crashes: list[str] = []
        slow_stops: list[str] = []
        started = time.monotonic()
        async with _running(slots), _task(follow(settings, progress, adjudicating), "reliability follower"):
            publishing = asyncio.ensure_future(publish_all()) if options.rate_per_s else None
            try:
                await _chaos(slots, progress, kill_schedule(options.kills, rng), rng, options, kills, crashes, say)
                if publishing is not None:
                    await publishing
            finally:
                if publishing is not None and not publishing.done():
                    publishing.cancel()
                    await asyncio.gather(publishing, return_exceptions=True)
            completed = progress.completed_at is not None
            elapsed = (progress.completed_at or time.monotonic()) - started
            if completed:
                await asyncio.sleep(_QUIET_S)
            say(f"  stopping the workers ({len(progress.done):,} of {len(inputs.keys):,} inputs accounted for)")
            for slot in slots:
                code = await slot.terminate()
                if code == -signal.SIGTERM:
                    say(f"  {slot.name} was still starting (SIGTERM came before its handler was set)")
                elif code is None:
                    slow_stops.append(f"{slot.name}: {slot.last_line()}")
                elif code != 0:
                    crashes.append(f"{slot.name}: exit {code} on SIGTERM: {slot.last_line()}")
        say("  reading every output topic to the end")
        read = {role: await read_to_end(settings, [topics[role]], client=f"reliability reader ({role})")
                for role in ("verdicts", "adjudication", "dead_letter", "labels")}
    return account(options, inputs, read, kills=kills, crashes=crashes, slow_stops=slow_stops, elapsed_s=elapsed,
                   completed=completed, adjudicating=adjudicating, broker=broker, load_before=load_before,
                   backend=backend_label or options.backend)


async def _chaos(slots: list[WorkerSlot], progress: Progress, schedule: list[float], rng: random.Random,
                 options: ChaosOptions, kills: list[Kill], crashes: list[str], say: Callable[[str], None]) -> None:
    """Kill on schedule, restart what exits, until every input is accounted for or nothing moves for stall_s."""
    last_kill = time.monotonic()
    pending = list(schedule)
    while progress.completed_at is None:
        if time.monotonic() - progress.last_change > options.stall_s:
            say(f"  nothing new for {options.stall_s:g} s: giving up with {len(progress.done):,} of "
                f"{len(progress.keys):,} accounted for")
            return
        for slot in slots:
            if (code := slot.exited()) is not None:
                crashes.append(f"{slot.name}: exit {code}: {slot.last_line()}")
                say(f"  {slot.name} exited on its own ({code}): restarting it")
                slot.start()
        if pending and progress.share >= pending[0] and time.monotonic() - last_kill >= options.min_gap_s:
            pending.pop(0)
            victim = rng.choice(slots)
            await victim.kill()
            kills.append(Kill(time.time(), victim.name, progress.share))
            say(f"  kill {len(kills)}/{len(schedule)}: {victim.name} at {progress.share:.0%}")
            victim.start()
            last_kill = time.monotonic()
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _running(slots: Sequence[WorkerSlot]) -> AsyncIterator[None]:
    """The workers started; on the way out every one still running is killed (a graceful stop is the caller's)."""
    try:
        for slot in slots:
            slot.start()
        yield
    finally:
        for slot in slots:
            if slot.exited() is None and slot.process is not None:
                await slot.kill()


@contextlib.asynccontextmanager
async def _task(coroutine: Coroutine[Any, Any, None], name: str) -> AsyncIterator[asyncio.Task[None]]:
    task: asyncio.Task[None] = asyncio.create_task(coroutine, name=name)
    try:
        yield task
    finally:
        task.cancel()
        results = await asyncio.gather(task, return_exceptions=True)
        if isinstance(results[0], Exception):
            raise results[0]


# -- the suite and its report ---------------------------------------------------------------------------------


async def run_reliability_bench(console: Console, options: ChaosOptions, *, model_dir: Path, policy_path: Path,
                                settings: Settings | None = None, model_label: str | None = None
                                ) -> ReliabilityResult:
    """The configured broker (or an embedded one, started now) and, for backend "model", one vLLM server on
    ``model_dir``; then :func:`run_chaos`. Everything started is stopped on the way out."""
    settings = (settings or load_settings()).model_copy(update={"policy_path": policy_path})
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modcascade-bench-reliability-")))
        base, broker = start_broker(settings, stack, scratch)
        console.print(f"reliability: {options.posts:,} records, {options.kills} kills, seed {options.seed}, "
                      f"{options.classify_workers} classify workers ({options.backend}), broker {broker}")
        if options.backend == "fake":
            return await run_chaos(base, options, scratch=scratch, console=console, broker=broker,
                                   backend_label="zero-cost FakeClassifier")
        async with model_server(model_dir, base, scratch, console) as server:
            base = base.model_copy(update={"model": base.model.model_copy(update={
                "backend": "vllm-http", "dir": server.info.path, "server_url": server.url})})
            return await run_chaos(base, options, scratch=scratch, console=console, broker=broker,
                                   backend_label=f"{model_label or model_dir.name} on one vLLM server")


# -- the fake classify worker process ------------------------------------------------------------------------


async def _fake_classify_worker() -> None:
    """The classify service (``run_classify_worker``) with the zero-cost classifier, configured by the
    environment; SIGTERM finishes the batch in progress and exits."""
    from pipeline.backends.fake import FakeClassifier
    from pipeline.policy import load_policy
    from pipeline.services import run_classify_worker

    settings = load_settings()
    taxonomy = load_policy(settings.policy_path).taxonomy
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    classifier = FakeClassifier((taxonomy.safe, *taxonomy.categories), safe=taxonomy.safe)
    report = await run_classify_worker(settings, stop, classifier=classifier,
                                       on_ready=lambda: print("classify worker ready (fake)", flush=True))
    print(f"classify worker stopped: {report.records} records", flush=True)


def _main(argv: Iterator[str]) -> None:
    if next(argv, None) != FAKE_ENTRY:
        raise SystemExit(f"usage: python -m pipeline.bench.reliability {FAKE_ENTRY}")
    asyncio.run(_fake_classify_worker())


if __name__ == "__main__":
    _main(iter(sys.argv[1:]))
