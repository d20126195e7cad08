"""The batch run's parts without a broker or a model: a JSONL file through the fake classifier, the checkpointer's
resume rules, a run stopped mid-input and resumed, the injected memory instrument, and a runner that loads neither
a Kafka client nor psutil. (Message Batches end to end: tests/integration/test_batch_message_batches.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from rich.console import Console

from pipeline import codec
from pipeline.backends.fake import FakeClassifier
from pipeline.batch.checkpointer import Checkpointer
from pipeline.batch.memory import OwnPeakRss
from pipeline.batch.report import BatchReport
from pipeline.batch.runner import BatchOptions, BatchRun, Outputs
from pipeline.batch.sinks import read_verdicts
from pipeline.batch.sources import Chunk, Cursor, PostSource
from pipeline.batch.sources.files import open_file_source
from pipeline.cascade.cache import ScoreCache
from pipeline.cascade.stage import ClassifyStage
from pipeline.errors import ConfigError
from pipeline.metrics import Metrics
from pipeline.policy import load_policy
from pipeline.records import AdjudicationRequest, DeadLetter
from pipeline.retry import Backoff
from tests.support.cascade import REPO

POLICY = load_policy(REPO / "policies" / "default.yaml")
LABELS = (POLICY.taxonomy.safe, *POLICY.taxonomy.categories)


def rule(text: str) -> dict[str, float]:
    """``[band]`` lands in spam's escalation band; anything else is clearly safe."""
    label, top = ("spam", 0.6) if "[band]" in text else ("safe", 0.97)
    rest = (1.0 - top) / (len(LABELS) - 1)
    return {name: top if name == label else rest for name in LABELS}


def write_posts(path: Path, clear: int, band: int, malformed: int = 0) -> set[str]:
    ids = [f"clear-{i}" for i in range(clear)] + [f"band-{i}" for i in range(band)]
    lines = [codec.dumps({"id": i, "text": f"post {i}" + (" [band]" if i.startswith("band") else "")}) for i in ids]
    lines += [b'{"id": "broken-%d", "text": ' % i for i in range(malformed)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return set(ids)


class StopsAfter:
    """A source that fails after ``chunks`` chunks, as a run killed mid-input."""

    def __init__(self, source: PostSource, chunks: int) -> None:
        self._source = source
        self._left = chunks
        self.description, self.unit = source.description, source.unit
        self.total_units, self.identity = source.total_units, source.identity

    async def chunks(self, size: int, start: Cursor | None) -> AsyncIterator[Chunk]:
        async for chunk in self._source.chunks(size, start):
            if not self._left:
                raise RuntimeError("stopped mid-input")
            self._left -= 1
            yield chunk

    async def aclose(self) -> None:
        await self._source.aclose()


class FixedMemory:
    scope = "a test figure"

    def peak_bytes(self) -> int:
        return 123 * 2**20


async def run_batch(posts: Path, outputs: Outputs, *, stop_after: int | None = None, memory: Any = None,
                    overwrite: bool = False) -> BatchReport:
    source: PostSource = open_file_source(posts)
    if stop_after is not None:
        source = StopsAfter(source, stop_after)
    metrics = Metrics.create(CollectorRegistry())
    classify = ClassifyStage(FakeClassifier(LABELS, rule=rule), lambda: POLICY, cache=ScoreCache(0, 1.0),
                             metrics=metrics, max_text_bytes=32_768, backoff=Backoff(0.01, 0.02))
    options = BatchOptions(outputs=outputs, chunk_posts=10, progress=False, overwrite=overwrite)
    run = BatchRun(source, POLICY, classify, options, identity={"input": source.identity, "model": "fake"},
                   metrics=metrics, console=Console(quiet=True), memory=memory)
    try:
        return await run.run()
    finally:
        await source.aclose()


def unadjudicated(outputs: Outputs) -> list[AdjudicationRequest]:
    return [codec.decode(line, AdjudicationRequest) for line in outputs.unadjudicated.read_bytes().splitlines()]


async def test_a_file_run_without_a_frontier_writes_every_post_once(tmp_path: Path) -> None:
    posts, outputs = tmp_path / "posts.jsonl", Outputs.beside(tmp_path / "out.jsonl")
    ids = write_posts(posts, clear=25, band=8, malformed=2)

    report = await run_batch(posts, outputs)

    verdict_ids = [v.post_id for v in read_verdicts(outputs.verdicts)]
    escalated = [r.post.id for r in unadjudicated(outputs)]
    assert Counter(verdict_ids + escalated) == Counter(ids)
    assert set(escalated) == {f"band-{i}" for i in range(8)}
    assert [codec.decode(line, DeadLetter).reason for line in outputs.dead_letters.read_bytes().splitlines()] \
        == ["invalid_json", "invalid_json"]
    assert report.complete and report.tally.posts == 35 and report.tally.escalated == Counter(unadjudicated=8)
    assert report.classified == 35 and report.classify_seconds > 0
    assert not outputs.labels.exists()  # no empty side files
    assert not outputs.state.exists()
    saved = codec.loads(outputs.report.read_bytes())
    assert saved["complete"] and saved["verdicts"] == 25
    assert saved["outputs"]["report"] == str(outputs.report)


async def test_memory_is_what_the_caller_injects_or_said_to_be_unmeasured(tmp_path: Path) -> None:
    posts = tmp_path / "posts.jsonl"
    write_posts(posts, clear=3, band=0)

    unmeasured = await run_batch(posts, Outputs.beside(tmp_path / "a.jsonl"))
    fixed = await run_batch(posts, Outputs.beside(tmp_path / "b.jsonl"), memory=FixedMemory())
    own = await run_batch(posts, Outputs.beside(tmp_path / "c.jsonl"), memory=OwnPeakRss())

    assert unmeasured.peak_rss_bytes is None
    assert codec.loads((tmp_path / "a.report.json").read_bytes())["peak_rss_bytes"] is None
    console = Console(record=True, width=200)
    unmeasured.render(console)
    assert re.search(r"peak memory +│ not measured", console.export_text())
    assert fixed.to_json()["peak_rss_bytes"] == 123 * 2**20
    assert fixed.to_json()["peak_rss_scope"] == "a test figure"
    fixed.render(console)
    assert "123 MiB RSS (a test figure)" in console.export_text()
    assert own.peak_rss_bytes is not None and own.peak_rss_bytes > 20 * 2**20  # this interpreter alone is bigger
    assert own.peak_rss_scope == OwnPeakRss.scope


async def test_a_run_stopped_mid_input_resumes_without_losing_or_repeating_a_post(tmp_path: Path) -> None:
    posts, outputs = tmp_path / "posts.jsonl", Outputs.beside(tmp_path / "out.jsonl")
    ids = write_posts(posts, clear=40, band=7)

    with pytest.raises(RuntimeError, match="stopped mid-input"):
        await run_batch(posts, outputs, stop_after=2)
    assert outputs.state.exists() and not outputs.report.exists()
    report = await run_batch(posts, outputs)

    written = [v.post_id for v in read_verdicts(outputs.verdicts)] + [r.post.id for r in unadjudicated(outputs)]
    assert Counter(written) == Counter(ids)
    assert report.complete
    assert report.tally.posts == 47  # the tally is carried across the two invocations
    assert report.classified == 27  # this invocation classified what was left after two chunks of 10


async def test_finished_outputs_are_kept_unless_overwrite(tmp_path: Path) -> None:
    posts, outputs = tmp_path / "posts.jsonl", Outputs.beside(tmp_path / "out.jsonl")
    write_posts(posts, clear=5, band=0)
    await run_batch(posts, outputs)

    with pytest.raises(ConfigError, match="--overwrite"):
        await run_batch(posts, outputs)
    report = await run_batch(posts, outputs, overwrite=True)
    assert report.complete and len(list(read_verdicts(outputs.verdicts))) == 5


def test_a_checkpoint_of_another_run_is_refused_and_names_what_changed(tmp_path: Path) -> None:
    outputs = Outputs.beside(tmp_path / "out.jsonl")
    first = Checkpointer(outputs, {"input": "a.jsonl", "policy": "default 1"})
    first.open()
    assert not first.resumed
    first.close()

    again = Checkpointer(outputs, {"input": "a.jsonl", "policy": "default 1"})
    again.open()
    assert again.resumed
    again.close()
    other = Checkpointer(outputs, {"input": "a.jsonl", "policy": "default 2"})
    with pytest.raises(ConfigError, match="'default 1' then, 'default 2' now"):
        other.open()


@pytest.mark.tools
def test_the_runner_loads_no_kafka_client_and_no_psutil() -> None:
    code = ("import sys; import pipeline.batch.runner, pipeline.batch.command, pipeline.batch.sources.files; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiokafka', 'psutil', 'kafka'}), "
            "sorted(m for m in sys.modules if m.startswith('pipeline.kafka')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["[]", "[]"], out.stdout
