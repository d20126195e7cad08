"""`modcascade bench --suites monitor`: how many posts/s of cascade output the drift monitor consumes, against the
classify worker's output rate, in one run on one machine.

    classify   the classify worker with the zero-cost FakeClassifier on pre-produced posts: the most verdicts and
               adjudication requests per second one worker publishes (:func:`pipeline.bench.pipeline.measure_ceiling`)
    monitor    ``modcascade worker monitor`` (its own process, as deployed) on pre-produced cascade output: verdicts
               and adjudication requests in the classify worker's mix, timed from its first counted record to its
               last by polling its ``modcascade_records_consumed_total`` (the group join and the changelog topics'
               creation excluded)

With the real model the classify worker publishes what the model serves (a few hundred posts/s on 2 CPU cores:
the pipeline suite), far below its zero-cost ceiling, so the ceiling is the rate the monitor is compared with.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from pipeline import codec
from pipeline.bench.pipeline import Run, measure_ceiling, new_tag, produce, scratch_topics, start_broker
from pipeline.policy import decide, load_policy
from pipeline.process import free_port
from pipeline.records import AdjudicationRequest, Post, Verdict, verdict_id
from pipeline.settings import Settings, TopicNames, load_settings

MONITOR_POSTS = 50_000
CEILING_POSTS = 20_000
_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class MonitorBenchResult:
    classify: Run  # the classify worker's output rate (zero-cost classifier)
    monitor: Run  # posts of cascade output the monitor counted
    verdicts: int
    escalations: int
    broker: str
    load_before: float

    @property
    def ratio(self) -> float:
        return self.monitor.posts_per_s / self.classify.posts_per_s if self.classify.posts_per_s else 0.0


def cascade_output(n: int, policy_path: Path, *, seed: int = 18) -> list[tuple[str, bytes, bytes]]:
    """(role, key, value) of what the classify worker publishes for ``n`` posts: verdicts, and adjudication
    requests for the band, decided by the policy on a spread of scores, stamped now."""
    policy = load_policy(policy_path)
    labels = (policy.taxonomy.safe, *policy.taxonomy.categories)
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out: list[tuple[str, bytes, bytes]] = []
    for i in range(n):
        top = labels[0] if rng.random() < 0.8 else rng.choice(labels[1:])
        score = rng.uniform(0.5, 0.99) if top != labels[0] else rng.uniform(0.9, 0.99)
        scores = dict.fromkeys(labels, round((1 - score) / (len(labels) - 1), 6)) | {top: round(score, 6)}
        post_id = f"bench-{i}"
        outcome = decide(scores, policy)
        record: AdjudicationRequest | Verdict
        if outcome.kind == "escalate":
            record = AdjudicationRequest(post=Post(id=post_id, text=f"post {i}"), scores=scores,
                                         candidate_category=outcome.category, model="bench", model_version="1",
                                         policy=policy.name, policy_version=policy.version, ingested_at=now,
                                         enqueued_at=now)
            out.append(("adjudication", post_id.encode(), codec.encode(record)))
        else:
            record = Verdict(verdict_id=verdict_id(post_id, policy.version), post_id=post_id, decision=outcome.kind,
                             category=outcome.category, scores=scores, route="slm", model="bench", model_version="1",
                             policy=policy.name, policy_version=policy.version, latency_ms=1.0, cost_usd=0.0,
                             decided_at=now)
            out.append(("verdicts", post_id.encode(), codec.encode(record)))
    return out



def consumed(port: int, topics: set[str]) -> int | None:
    """The monitor's ``modcascade_records_consumed_total`` over ``topics`` (None while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    return int(sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                   if sample.name == "modcascade_records_consumed_total" and sample.labels.get("topic") in topics))


def monitor_env(settings: Settings, *, app_id: str, data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODCASCADE_")}
    env.update({
        "MODCASCADE_KAFKA_BOOTSTRAP": settings.bootstrap,
        "MODCASCADE_KAFKA_IDEMPOTENCE": str(settings.idempotence).lower(),
        "MODCASCADE_TOPIC_PREFIX": settings.topics.prefix,
        "MODCASCADE_MONITOR_APP_ID": app_id,
        "MODCASCADE_MONITOR_DATA_DIR": str(data_dir),
        "MODCASCADE_POLICY_PATH": str(settings.policy_path),
        "MODCASCADE_METRICS_PORT": str(port),
        "MODCASCADE_LOG_LEVEL": "warning",
    })
    return env


async def measure_monitor(base: Settings, *, policy_path: Path, n_posts: int = MONITOR_POSTS,
                          scratch: Path, console: Console | None = None) -> tuple[Run, int, int]:
    """The monitor process on ``n_posts`` posts of pre-produced cascade output: (run, verdicts, escalations)."""
    tag = new_tag("monitor")
    settings = base.model_copy(update={"topics": TopicNames(prefix=f"{tag}-"), "policy_path": policy_path})
    output = cascade_output(n_posts, policy_path)
    async with scratch_topics(settings) as topics:
        for role in ("verdicts", "adjudication"):
            await produce(settings, topics[role], [(k, v) for r, k, v in output if r == role])
        inputs = {topics["verdicts"], topics["adjudication"]}
        port = free_port()
        log = scratch / f"{tag}.log"
        env = monitor_env(settings, app_id=f"{tag}-monitor", data_dir=scratch / f"{tag}-data", port=port)
        if console:
            console.print(f"  running `modcascade worker monitor` on {n_posts:,} posts of cascade output")
        with log.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pipeline.cli", "worker", "monitor", env=env, stdout=sink,
                stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
        try:
            first: tuple[float, int] | None = None
            deadline = time.monotonic() + _START_TIMEOUT_S + n_posts / 500
            while True:
                if process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the monitor did not count {n_posts:,} posts (exit code {process.returncode}); "
                                       f"its log:\n{log.read_text('utf-8', 'replace')[-3000:]}")
                count = consumed(port, inputs)
                now = time.perf_counter()
                if count and first is None:
                    first = (now, count)
                if count is not None and count >= n_posts and first is not None:
                    break
                await asyncio.sleep(0.05)
        finally:
            if process.returncode is None:
                process.terminate()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), 30)
            if process.returncode is None:
                process.kill()
                await process.wait()
    start, counted = first
    if counted >= n_posts:
        raise RuntimeError(f"the monitor counted all {n_posts:,} posts before the first poll: too few to time")
    verdicts = sum(1 for role, _, _ in output if role == "verdicts")
    return Run(n_posts - counted, now - start, 0), verdicts, n_posts - verdicts


async def run_monitor_bench(console: Console, *, policy_path: Path, settings: Settings | None = None,
                            monitor_posts: int = MONITOR_POSTS, ceiling_posts: int = CEILING_POSTS
                            ) -> MonitorBenchResult:
    settings = settings or load_settings()
    load_before = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modcascade-bench-monitor-")))
        base, broker = start_broker(settings, stack, scratch)
        console.print(f"classify worker output rate: {ceiling_posts:,} posts, zero-cost classifier (broker {broker})")
        classify = await measure_ceiling(base, policy_path=policy_path, n_posts=ceiling_posts, console=console)
        console.print(f"  {classify.posts_per_s:,.0f} posts/s")
        console.print(f"monitor throughput: {monitor_posts:,} posts")
        monitor, verdicts, escalations = await measure_monitor(base, policy_path=policy_path, n_posts=monitor_posts,
                                                               scratch=scratch, console=console)
        console.print(f"  {monitor.posts_per_s:,.0f} posts/s")
    return MonitorBenchResult(classify=classify, monitor=monitor, verdicts=verdicts, escalations=escalations,
                              broker=broker, load_before=load_before)


def render_markdown(result: MonitorBenchResult, *, machine: str, date: str) -> str:
    c, m = result.classify, result.monitor
    return "\n".join([
        f"Machine: {machine}. Date: {date}. Broker: {result.broker}. Load average (1 min) when the run started: "
        f"{result.load_before:.2f}.",
        "",
        "| measurement | posts | result |",
        "|---|---:|---:|",
        f"| classify worker output, zero-cost classifier (its ceiling) | {c.posts:,} | {c.posts_per_s:,.0f} posts/s |",
        f"| drift monitor (`modcascade worker monitor`) on cascade output | {m.posts:,} | "
        f"{m.posts_per_s:,.0f} posts/s ({result.ratio:.2f} x the classify ceiling) |",
        "",
        f"Method: one run (`modcascade bench --suites monitor`, `pipeline/bench/monitor.py`). The monitor's input: "
        f"{result.verdicts:,} verdicts and {result.escalations:,} adjudication requests (the default policy's "
        "decisions on a seeded score spread, ~80% clearly safe), pre-produced; the monitor runs as its own process "
        "and is timed from its first counted record to its last (polling its metrics endpoint), so the group join "
        "and the creation of its changelog topics are excluded. It counts every record into its window tables "
        "(one changelog write per window and statistic per batch). The classify figure is the worker with the "
        "zero-cost FakeClassifier, the most it can publish; with the real model it publishes what the model serves "
        "(the pipeline suite).",
    ])
