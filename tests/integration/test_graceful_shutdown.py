"""A classify worker process stopped with SIGTERM mid-stream (how Kubernetes and `docker stop` stop it), on the
session's vLLM server and the real broker.

It exits 0 within a bounded time, after finishing, publishing and committing the batch in progress and leaving
the group. Then, with the group's committed offsets read by an admin client (nothing joins the group):

(a) nothing is lost: every record below its partition's committed offset has its output (a verdict or an
    adjudication request per post, a dead letter per malformed record);
(b) no finished work is left uncommitted: every record that has an output is below the committed offset of its
    partition, so a restarted worker redoes nothing.

A second worker then finishes the stream and every post id ends with exactly one output (no duplicates at all).
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from pipeline.settings import Settings
from tests.support.cascade import assert_accounted, collect, make_stream, publish
from tests.support.kafka import ProducerFactory
from tests.support.models import Engines
from tests.support.processes import start_worker
from tests.support.workers import (
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

STOP_WITHIN_S = 20.0
"""SIGTERM to exit: the batch in progress (at most 64 posts, well under a second of model time) is finished,
published and committed, the group is left and the clients are closed."""


@pytest.fixture
async def settings(kafka_settings: Settings, _session_topics: list[str], tmp_path: Path, engines: Engines,
                   minilm_dir: Path) -> Settings:
    return await vllm_settings(kafka_settings, _session_topics, tmp_path, engines, minilm_dir)


async def test_sigterm_mid_stream_commits_exactly_the_published_work(
    settings: Settings, producer_factory: ProducerFactory, spawn: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    stream = make_stream(2500, malformed_every=50)
    await publish(await producer_factory(), settings.topics.all()["posts"], stream.records)
    where = await source_positions(settings, stream)
    log = tmp_path / "first.log"
    spawn.append(first := start_worker("classify", worker_env(settings), log))
    await wait_for_line(log, READY, first, timeout_s=60)

    async with asyncio.timeout(120):  # well into the stream, then SIGTERM
        while len((await collect(settings, stream, timeout_s=0.3, quiet_s=0)).ids()) < 400:
            assert first.poll() is None, log.read_text()
    took = terminate(first, log, timeout_s=STOP_WITHIN_S)
    assert "stopping after the batch in progress" in log.read_text()

    committed = await committed_offsets(settings)
    done = await collect(settings, stream, timeout_s=3, quiet_s=0)  # everything published so far
    assert not done.complete(stream), "the stream finished before SIGTERM: make it longer"
    assert 0 < sum(committed.values()) < len(stream.records)
    assert max(done.ids().values()) == 1 and max(done.dead_keys().values(), default=1) == 1, \
        "one worker, no rebalance: nothing may be published twice"

    with_output = set(done.ids()) | set(done.dead_keys())
    below = {key for key, (partition, offset) in where.items() if offset < committed[partition]}
    lost = sorted(below - with_output)
    assert not lost, f"(a) {len(lost)} records below the committed offsets have no output, e.g. {lost[:5]}"
    redo = sorted(with_output - below)
    assert not redo, (f"(b) {len(redo)} records have an output but are not committed (a restart would redo "
                      f"them), e.g. {[(k, where[k]) for k in redo[:5]]}; committed: {committed}")
    assert records_processed(log) == len(below), "the worker's own count is what it committed"
    assert took < STOP_WITHIN_S

    spawn.append(second := start_worker("classify", worker_env(settings), tmp_path / "second.log"))
    out = await collect(settings, stream, timeout_s=120)
    assert_accounted(stream, out, duplicates_allowed=False)
    terminate(second, tmp_path / "second.log")
    assert records_processed(tmp_path / "second.log") == len(stream.records) - len(below)
