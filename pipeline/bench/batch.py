"""Batch mode against the stream: ``modcascade batch`` on files of 10,000 and 100,000 posts, and the classify
worker's throughput with the same model, all in one run on one machine.

    stream   one vLLM server (``ModelServer``) on the model; N posts (default 2,000) pre-produced and through the
             classify worker (vllm-http), timed as the pipeline suite times it (:func:`pipeline.measure_stream`,
             the "pipeline with the model" row of ``--suites pipeline``). The server and an embedded broker are
             stopped before the batch runs start, so they do not compete with them for the cores.
    batch    JSONL files of S and L distinct posts (default 10,000 and 100,000), each run by
             ``modcascade batch --in F --out O.jsonl --no-progress --backend vllm-local --model M --policy P`` in a
             subprocess (``sys.executable -m pipeline.cli``) whose environment has no Anthropic or OpenAI setting
             (escalations then go to the unadjudicated file: no frontier call is made or measured) and
             ``MODCASCADE_BATCH_CACHE_ENTRIES=0``. Throughput is the report's (``<out stem>.report.json``): posts
             classified / seconds from the first chunk read to the last chunk committed (the engine's start is
             before that). Peak RSS is this module's sample of the batch process and its children together
             (:class:`ProcessTreeRss`, every 0.2 s over the subprocess's whole life, engine start included), or
             the report's figure where that is larger (the batch process alone, from ``getrusage``: production
             batch samples nothing and does not need psutil). The outputs are checked: every input id exactly
             once in verdicts + unadjudicated, no dead letter, nothing else.
    goals    batch throughput at L posts >= 1.0 x the stream's; peak RSS at L / at S <= 1.25 (flat memory: the
             batch reads, classifies and writes in chunks, so its memory must not grow with the input).

Posts are a seeded sample of the seed corpus with a unique suffix each (``bench_texts``), the same as the stream's,
and neither side has a score cache: no post is served from a cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

from pipeline import codec
from pipeline.batch.runner import Outputs
from pipeline.bench.pipeline import (
    MODEL_POSTS,
    Run,
    bench_texts,
    http_max_connections,
    measure_stream,
    model_server,
    post_records,
    start_broker,
)
from pipeline.errors import ConfigError
from pipeline.settings import Settings, load_settings

STREAM_POSTS = MODEL_POSTS
BATCH_POSTS = (10_000, 100_000)
"""The small and the large batch run; the goals compare the large one with the stream and with the small one."""
BATCH_BACKEND = "vllm-local"
THROUGHPUT_GOAL = 1.0  # batch posts/s at the large size, as a share of the stream's
FLAT_MEMORY_GOAL = 1.25  # peak RSS at the large size / at the small size, at most
SAMPLE_S = 0.2

_MIB = 2**20
_BATCH_START_S = 600.0  # interpreter, imports and the vLLM engine's start, on a busy machine
_BATCH_POSTS_PER_S_FLOOR = 20.0  # a run slower than this is stuck: give up
_STOP_GRACE_S = 30.0  # SIGTERM → the batch closes its engine and exits
_LOG_TAIL_LINES = 30
_FRONTIER_MARKERS = ("ANTHROPIC", "OPENAI")  # any variable naming these configures (or may configure) a frontier


# -- results --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchRunResult:
    """One ``modcascade batch`` run over ``posts`` posts."""

    posts: int
    posts_per_s: float
    """The report's: posts classified / classify seconds."""
    classify_seconds: float
    wall_seconds: float
    """The subprocess from start to exit (interpreter, engine start, run, engine stop)."""
    report_peak_rss_bytes: int
    """The report's: the batch process's own peak RSS (its engine core child not in it); 0 if not measured."""
    sampled_peak_rss_bytes: int
    """:class:`ProcessTreeRss` of the batch process: it and its children together, sampled."""
    verdicts: int
    unadjudicated: int

    @property
    def peak_rss_bytes(self) -> int:
        return max(self.report_peak_rss_bytes, self.sampled_peak_rss_bytes)


@dataclass(frozen=True)
class BatchBenchResult:
    stream: Run
    small: BatchRunResult
    large: BatchRunResult
    model: str
    broker: str
    chunk_posts: int
    http_batch_size: int
    http_max_connections: int
    load_before: float = 0.0
    """The machine's 1-minute load average when the suite started (other work skews every figure)."""

    @property
    def throughput_ratio(self) -> float:
        """Batch throughput at the large size as a share of the stream's."""
        return self.large.posts_per_s / self.stream.posts_per_s if self.stream.posts_per_s else 0.0

    @property
    def throughput_met(self) -> bool:
        return self.throughput_ratio >= THROUGHPUT_GOAL

    @property
    def memory_ratio(self) -> float:
        """Peak RSS at the large size / at the small size."""
        return self.large.peak_rss_bytes / self.small.peak_rss_bytes if self.small.peak_rss_bytes else float("inf")

    @property
    def memory_met(self) -> bool:
        return self.memory_ratio <= FLAT_MEMORY_GOAL


# -- one batch run in a subprocess ----------------------------------------------------------------------------


def write_posts(path: Path, n: int, *, tag: str, seed: int) -> set[str]:
    """``n`` distinct posts (ids ``<tag>-<i>``) as JSONL at ``path``; their ids."""
    ids: set[str] = set()
    with path.open("wb") as file:
        for key, value in post_records(tag, bench_texts(n, seed=seed, tag=tag)):
            file.write(value + b"\n")
            ids.add(key.decode())
    return ids


def batch_command(posts: Path, out: Path, *, model_dir: Path, policy_path: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "batch", "--in", str(posts), "--out", str(out), "--no-progress",
            "--backend", BATCH_BACKEND, "--model", str(model_dir), "--policy", str(policy_path)]


def batch_environment(environ: Mapping[str, str], settings: Settings) -> dict[str, str]:
    """``environ`` without any frontier setting (no Anthropic or OpenAI variable), with the score cache off and
    the model's token limit and the chunk size of ``settings``."""
    env = {key: value for key, value in environ.items()
           if not any(marker in key.upper() for marker in _FRONTIER_MARKERS)}
    env.update({
        "MODCASCADE_BATCH_CACHE_ENTRIES": "0",
        "MODCASCADE_BATCH_CHUNK_POSTS": str(settings.batch.chunk_posts),
        "MODCASCADE_MODEL_MAX_LENGTH": str(settings.model.max_length),
    })
    return env


async def run_batch(posts: Path, expected: set[str], *, model_dir: Path, policy_path: Path, settings: Settings,
                    scratch: Path) -> BatchRunResult:
    """``modcascade batch`` on ``posts`` in a subprocess, its process tree's RSS sampled meanwhile; then its report
    read and its outputs checked against ``expected`` (the input's ids)."""
    out = scratch / f"{posts.stem}.verdicts.jsonl"
    log_path = scratch / f"{posts.stem}.batch.log"
    timeout_s = _BATCH_START_S + len(expected) / _BATCH_POSTS_PER_S_FLOOR
    with log_path.open("wb") as log:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *batch_command(posts, out, model_dir=model_dir, policy_path=policy_path),
            env=batch_environment(os.environ, settings), stdin=asyncio.subprocess.DEVNULL, stdout=log,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        tree = ProcessTreeRss(process.pid)
        sampler = asyncio.create_task(tree.sample(), name="bench-batch-rss")
        try:
            returncode = await asyncio.wait_for(process.wait(), timeout_s)
        except BaseException:
            await _stop_group(process)
            raise
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        wall = time.perf_counter() - started
    if returncode != 0:
        raise RuntimeError(f"modcascade batch on {posts.name} exited with {returncode}:\n{_tail(log_path)}")
    outputs = Outputs.beside(out)
    report = codec.loads(outputs.report.read_bytes())
    if not report["complete"] or report["classified"] != len(expected):
        raise RuntimeError(f"modcascade batch on {posts.name}: the report says complete={report['complete']}, "
                           f"{report['classified']:,} of {len(expected):,} posts classified ({outputs.report})")
    verdicts, unadjudicated = check_batch_outputs(outputs, expected)
    posts_per_s = float(report["posts_per_s"])
    classify_seconds = report.get("classify_seconds") or (len(expected) / posts_per_s if posts_per_s else 0.0)
    return BatchRunResult(posts=len(expected), posts_per_s=posts_per_s, classify_seconds=float(classify_seconds),
                          wall_seconds=wall, report_peak_rss_bytes=int(report.get("peak_rss_bytes") or 0),
                          sampled_peak_rss_bytes=tree.peak, verdicts=verdicts, unadjudicated=unadjudicated)


class ProcessTreeRss:
    """The peak RSS of a process and its descendants together (the batch process and its vLLM engine core),
    sampled. A :class:`~pipeline.batch.memory.PeakMemory`: a run in this process can be given
    ``ProcessTreeRss(os.getpid())`` (with :meth:`sample` running beside it) to report the same figure."""

    scope = "the batch process and its children (the vLLM engine core), sampled"

    def __init__(self, pid: int, interval_s: float = SAMPLE_S) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak = 0
        self._root: psutil.Process | None = None

    def take(self) -> bool:
        """One sample; False once the process is gone."""
        try:
            self._root = self._root or psutil.Process(self.pid)
            tree = [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return False
        total = 0
        for process in tree:
            with contextlib.suppress(psutil.Error):  # exited (or turned zombie) while we looked
                total += process.memory_info().rss
        self.peak = max(self.peak, total)
        return True

    async def sample(self) -> None:
        """Sample every ``interval_s`` until cancelled or the process is gone."""
        while self.take():
            await asyncio.sleep(self.interval_s)

    def peak_bytes(self) -> int:
        self.take()
        return self.peak


async def _stop_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the batch's process group (the batch stops gracefully on it), SIGKILL after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), _STOP_GRACE_S)
            return


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(path.read_text("utf-8", errors="replace").strip().splitlines()[-lines:])


def check_batch_outputs(outputs: Outputs, expected: set[str]) -> tuple[int, int]:
    """(verdicts, unadjudicated escalations) of a finished run. Raises unless every id of ``expected`` is in
    exactly one record of the two files together, no other id is, and there is no dead letter. Reads the files
    line by line and keeps only the ids."""
    seen: set[str] = set()
    duplicates = unknown = 0
    counts: list[int] = []
    readers: tuple[tuple[Path, Callable[[Any], str]], ...] = (
        (outputs.verdicts, lambda record: record["post_id"]),
        (outputs.unadjudicated, lambda record: record["post"]["id"]),
    )
    for path, post_id in readers:
        count = 0
        for line in _lines(path):
            count += 1
            pid = post_id(codec.loads(line))
            if pid in seen:
                duplicates += 1
            elif pid not in expected:
                unknown += 1
            seen.add(pid)
        counts.append(count)
    dead_letters = sum(1 for _ in _lines(outputs.dead_letters))
    missing = len(expected - seen)
    if missing or duplicates or unknown or dead_letters:
        raise RuntimeError(f"batch outputs of {len(expected):,} posts: {counts[0]:,} verdicts + {counts[1]:,} "
                           f"unadjudicated ({missing:,} ids missing, {duplicates:,} duplicates, {unknown:,} unknown), "
                           f"{dead_letters:,} dead letters, in {outputs.verdicts.parent}")
    return counts[0], counts[1]


def _lines(path: Path) -> Iterable[bytes]:
    """The non-blank lines of ``path``; none when it does not exist (the batch removes empty side files)."""
    if not path.exists():
        return
    with path.open("rb") as file:
        for line in file:
            if line.strip():
                yield line


# -- the suite ------------------------------------------------------------------------------------------------


async def run_batch_bench(console: Console, *, model_dir: Path, policy_path: Path, settings: Settings | None = None,
                          stream_posts: int = STREAM_POSTS, batch_posts: tuple[int, int] = BATCH_POSTS,
                          model_label: str | None = None) -> BatchBenchResult:
    """The stream's throughput with the model, then ``modcascade batch`` at both sizes, in one run. Uses
    ``settings.bootstrap`` when a broker is configured, else starts an embedded one. Everything it starts is
    stopped on the way out, also on Ctrl-C."""
    small_n, large_n = batch_posts
    if not 0 < small_n < large_n or stream_posts <= 0:
        raise ConfigError(f"batch bench sizes: need 0 < small < large posts and stream posts > 0, got "
                          f"{small_n}, {large_n} and {stream_posts}")
    settings = settings or load_settings()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="modcascade-bench-batch-") as scratch_dir:
        scratch = Path(scratch_dir)
        with contextlib.ExitStack() as stack:
            base, broker = start_broker(settings, stack, scratch)
            async with model_server(model_dir, base, scratch, console) as server:
                console.print(f"stream: {stream_posts:,} posts through the classify worker (vllm-http, broker "
                              f"{broker})")
                stream = await measure_stream(base, policy_path=policy_path, server=server, n_posts=stream_posts,
                                              console=console)
        console.print("  model server and broker stopped")
        runs = []
        for seed, n in enumerate((small_n, large_n), start=5):
            posts = scratch / f"posts-{n}.jsonl"
            expected = write_posts(posts, n, tag=f"batch{n}", seed=seed)
            console.print(f"batch: modcascade batch on {n:,} posts ({BATCH_BACKEND}, "
                          f"{posts.stat().st_size / _MIB:,.1f} MiB of JSONL)")
            run = await run_batch(posts, expected, model_dir=model_dir, policy_path=policy_path, settings=settings,
                                  scratch=scratch)
            console.print(f"  {run.posts_per_s:,.0f} posts/s, peak RSS {run.peak_rss_bytes / _MIB:,.0f} MiB "
                          f"(report {run.report_peak_rss_bytes / _MIB:,.0f}, sampled "
                          f"{run.sampled_peak_rss_bytes / _MIB:,.0f}), {run.wall_seconds:.0f} s in all")
            posts.unlink()
            runs.append(run)
    return BatchBenchResult(stream=stream, small=runs[0], large=runs[1], model=model_label or model_dir.name,
                            broker=broker, chunk_posts=settings.batch.chunk_posts,
                            http_batch_size=settings.model.batch_size, http_max_connections=http_max_connections(),
                            load_before=load_before)


# -- the report -----------------------------------------------------------------------------------------------


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"


def _mib(n: int) -> str:
    return f"{n / _MIB:,.0f} MiB"


def _batch_cell(run: BatchRunResult) -> str:
    return (f"{run.posts_per_s:,.0f} posts/s; peak RSS {_mib(run.peak_rss_bytes)} (report "
            f"{_mib(run.report_peak_rss_bytes)}, sampled {_mib(run.sampled_peak_rss_bytes)})")


def render_markdown(result: BatchBenchResult, *, machine: str, date: str) -> str:
    s, small, large = result.stream, result.small, result.large
    batch_label = f"`modcascade batch`, {BATCH_BACKEND}, chunks of {result.chunk_posts}"
    lines = [
        f"Machine: {machine}. Date: {date}. Model: {result.model}. Stream: the classify worker through "
        f"{result.broker} on one vLLM server (vllm-http, {result.http_batch_size} posts per request, "
        f"{result.http_max_connections} connections). Batch: `modcascade batch --backend {BATCH_BACKEND}` (the "
        f"engine in the batch process), no frontier configured. Load average (1 min) when the run started: "
        f"{result.load_before:.2f}.",
        "",
        "| measurement | posts | result | goal | met |",
        "|---|---:|---:|---|---|",
        f"| stream: classify worker, vllm-http, batch {s.batch_max_posts} | {s.posts:,} | "
        f"{s.posts_per_s:,.0f} posts/s | | |",
        f"| batch: {batch_label} | {small.posts:,} | {_batch_cell(small)} | | |",
        f"| batch: {batch_label} | {large.posts:,} | {_batch_cell(large)}; {result.throughput_ratio:.2f} x stream "
        f"| ≥ {THROUGHPUT_GOAL:.1f} x stream | {_yes(result.throughput_met)} |",
        f"| flat memory: peak RSS at {large.posts:,} / at {small.posts:,} posts | | {result.memory_ratio:.2f} | "
        f"≤ {FLAT_MEMORY_GOAL:.2f} | {_yes(result.memory_met)} |",
        "",
        "Method: all in one run on one machine (`modcascade bench --suites batch`, `pipeline/bench/batch.py`). "
        "Stream: the posts pre-produced and through the classify worker (`run_classify_worker`, in the bench "
        "process), timed from its first consumed records to the commit of the last post's output, every output "
        "read back (as the \"pipeline with the model\" row of the pipeline suite); the model server and the broker "
        "are then stopped. Batch: a JSONL file of distinct posts per size, run by `modcascade batch --in F --out "
        f"O.jsonl --no-progress --backend {BATCH_BACKEND}` as a subprocess with no Anthropic or OpenAI setting in "
        "its environment (escalations go to the unadjudicated file: "
        f"{large.unadjudicated:,} of {large.posts:,} in the large run; no frontier call is made or measured). "
        "Posts/s is the batch report's: posts classified over the time from the first chunk read to the last "
        "chunk committed (the engine starts before; the whole subprocess took "
        f"{small.wall_seconds:,.0f} s and {large.wall_seconds:,.0f} s). Peak RSS is the batch process and its "
        "children (the vLLM engine core) together, sampled by the bench every 0.2 s over the subprocess's whole "
        "life (the report's own figure, the batch process alone from getrusage, where that is larger); pages "
        "shared between the processes are counted in each. Every input id was found exactly once in the verdicts and "
        "unadjudicated files, with no dead letter. Posts are a seeded sample of the seed corpus with a unique "
        "suffix each, and neither side has a score cache.",
    ]
    return "\n".join(lines) + "\n"
