"""Scaling out: several classify worker processes in one group on the session's vLLM server and the real broker
(the embedded one, or Kafka with KAFKA_BOOTSTRAP), with one killed and one added mid-stream.

Three workers share ``posts`` (6 partitions, 2 each) while a few thousand posts (some malformed) stream through;
one is killed with SIGKILL mid-stream and a fourth is started. At the end, checked id by id:

- nothing is lost: every post has a verdict or an adjudication request, every malformed record a dead letter;
- duplicates come only from the killed worker's uncommitted batch: they are at most one batch (64 records), all
  on at most the 2 partitions one worker owns, and each was above its partition's committed offset when the
  worker died (published, never committed, so the partition's next owner decided it again, with the same
  ``verdict_id``). The rebalances among the live workers (the kill, the new worker's join, the final stops)
  publish nothing twice: a worker finishes and commits its batch before it gives its partitions up;
- the live workers stop gracefully (SIGTERM: exit 0, everything committed) and each original one did work.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import pytest

from pipeline.settings import Settings
from tests.support.cascade import assert_accounted, collect, make_stream, publish
from tests.support.kafka import ProducerFactory
from tests.support.models import Engines
from tests.support.processes import start_worker
from tests.support.workers import (
    BATCH_MAX_POSTS,
    READY,
    committed_offsets,
    records_processed,
    source_positions,
    terminate,
    vllm_settings,
    wait_for_line,
    worker_env,
)

pytestmark = [
    pytest.mark.broker,
    pytest.mark.model,
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]

PARTITIONS = 6
WORKERS = 3


@pytest.fixture
async def settings(kafka_settings: Settings, _session_topics: list[str], tmp_path: Path, engines: Engines,
                   minilm_dir: Path) -> Settings:
    return await vllm_settings(kafka_settings, _session_topics, tmp_path, engines, minilm_dir, partitions=PARTITIONS)


async def test_three_workers_one_killed_and_one_added_lose_no_post(
    settings: Settings, producer_factory: ProducerFactory, spawn: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    stream = make_stream(3000, malformed_every=50)
    await publish(await producer_factory(), settings.topics.all()["posts"], stream.records)
    where = await source_positions(settings, stream)
    env = worker_env(settings)
    logs = [tmp_path / f"worker-{i}.log" for i in range(WORKERS + 1)]
    workers = [start_worker("classify", env, log) for log in logs[:WORKERS]]
    spawn.extend(workers)
    for worker, log in zip(workers, logs, strict=False):
        await wait_for_line(log, READY, worker, timeout_s=90)

    async with asyncio.timeout(120):  # the three share the stream for a while, then one dies
        while len((await collect(settings, stream, timeout_s=0.3, quiet_s=0)).ids()) < 900:
            assert all(w.poll() is None for w in workers), [log.read_text()[-2000:] for log in logs[:WORKERS]]
    killed = workers[1]
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=10) == -signal.SIGKILL
    at_kill = await committed_offsets(settings)  # before the group reassigns the dead worker's partitions
    assert not (await collect(settings, stream, timeout_s=0.3, quiet_s=0)).complete(stream), \
        "the stream finished before the kill: make it longer"

    spawn.append(added := start_worker("classify", env, logs[WORKERS]))
    out = await collect(settings, stream, timeout_s=240)
    await wait_for_line(logs[WORKERS], READY, added, timeout_s=60)  # the added worker was given partitions

    assert_accounted(stream, out, duplicates_allowed=True)
    counts = out.ids() + out.dead_keys()
    twice = sorted(key for key, count in counts.items() if count > 1)
    assert len(twice) <= BATCH_MAX_POSTS, f"{len(twice)} records were published twice: more than one batch"
    assert len({where[key][0] for key in twice}) <= PARTITIONS // WORKERS, \
        f"duplicates on partitions {sorted({where[key][0] for key in twice})}: not one worker's"
    committed_before = [key for key in twice if where[key][1] < at_kill[where[key][0]]]
    assert not committed_before, f"records committed before the kill were published again: {committed_before[:5]}"

    live = [(w, log) for w, log in zip([*workers, added], logs, strict=True) if w is not killed]
    for worker, log in live:
        terminate(worker, log)
    assert all(records_processed(log) > 0 for _, log in live[:2]), "each original worker did part of the stream"
