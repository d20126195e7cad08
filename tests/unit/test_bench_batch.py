"""The batch benchmark's pure parts (``modcascade bench --suites batch``): goals, the markdown section, the batch
subprocess's environment, the output check and the process-tree memory sample. No benchmark runs here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from pipeline import codec
from pipeline.batch.runner import Outputs
from pipeline.bench.batch import (
    BatchBenchResult,
    BatchRunResult,
    ProcessTreeRss,
    batch_command,
    batch_environment,
    check_batch_outputs,
    render_markdown,
    run_batch_bench,
    write_posts,
)
from pipeline.bench.pipeline import Run
from pipeline.errors import ConfigError
from pipeline.settings import Settings
from tests.support.cascade import REPO

MIB = 2**20


def _run(posts: int, posts_per_s: float, report_mib: int, sampled_mib: int, unadjudicated: int = 0) -> BatchRunResult:
    return BatchRunResult(posts=posts, posts_per_s=posts_per_s, classify_seconds=posts / posts_per_s,
                          wall_seconds=posts / posts_per_s + 45, report_peak_rss_bytes=report_mib * MIB,
                          sampled_peak_rss_bytes=sampled_mib * MIB, verdicts=posts - unadjudicated,
                          unadjudicated=unadjudicated)


def _result(small: BatchRunResult, large: BatchRunResult, stream_posts_per_s: float = 200.0) -> BatchBenchResult:
    return BatchBenchResult(stream=Run(2000, 2000 / stream_posts_per_s, 256), small=small, large=large, model="m",
                            broker="embedded tansu", chunk_posts=2048, http_batch_size=64, http_max_connections=4,
                            load_before=0.5)


def test_both_goals_met_when_batch_is_faster_and_memory_flat() -> None:
    result = _result(_run(10_000, 300.0, 1000, 1010), _run(100_000, 310.0, 1040, 1020, unadjudicated=4321))

    assert result.throughput_ratio == pytest.approx(1.55)
    assert result.throughput_met
    assert result.large.peak_rss_bytes == 1040 * MIB  # the larger of report and sample
    assert result.memory_ratio == pytest.approx(1040 / 1010)
    assert result.memory_met

    text = render_markdown(result, machine="test machine", date="2026-01-01")
    assert "Machine: test machine. Date: 2026-01-01." in text
    assert "| stream: classify worker, vllm-http, batch 256 | 2,000 | 200 posts/s | | |" in text
    assert "| 10,000 | 300 posts/s; peak RSS 1,010 MiB (report 1,000 MiB, sampled 1,010 MiB) | | |" in text
    assert "| 100,000 | 310 posts/s; peak RSS 1,040 MiB (report 1,040 MiB, sampled 1,020 MiB); 1.55 x stream |" in text
    assert "| ≥ 1.0 x stream | yes |" in text
    assert "| flat memory: peak RSS at 100,000 / at 10,000 posts | | 1.03 | ≤ 1.25 | yes |" in text
    assert "4,321 of 100,000" in text
    assert "**no**" not in text


def test_goals_missed_are_marked() -> None:
    slow_and_growing = _result(_run(10_000, 300.0, 1000, 1000), _run(100_000, 190.0, 1300, 1260))

    assert not slow_and_growing.throughput_met
    assert not slow_and_growing.memory_met
    text = render_markdown(slow_and_growing, machine="m", date="d")
    assert "0.95 x stream | ≥ 1.0 x stream | **no** |" in text
    assert "| 1.30 | ≤ 1.25 | **no** |" in text


def test_goal_boundaries_count_as_met() -> None:
    exactly = _result(_run(10_000, 200.0, 1000, 1000), _run(100_000, 200.0, 1250, 1250))

    assert exactly.throughput_met and exactly.memory_met


def test_the_batch_runs_without_any_frontier_setting_and_without_a_cache() -> None:
    environ = {"PATH": "/bin", "ANTHROPIC_API_KEY": "k", "MODCASCADE_ANTHROPIC_API_KEY": "k", "OPENAI_API_KEY": "k",
               "MODCASCADE_ADJUDICATOR_OPENAI_BASE_URL": "http://judge", "MODCASCADE_BATCH_CACHE_ENTRIES": "5",
               "MODCASCADE_POLICY_PATH": "p.yaml"}
    settings = Settings().model_copy(update={"model": Settings().model.model_copy(update={"max_length": 64})})

    env = batch_environment(environ, settings)

    assert env == {"PATH": "/bin", "MODCASCADE_POLICY_PATH": "p.yaml", "MODCASCADE_BATCH_CACHE_ENTRIES": "0",
                   "MODCASCADE_BATCH_CHUNK_POSTS": str(settings.batch.chunk_posts),
                   "MODCASCADE_MODEL_MAX_LENGTH": "64"}
    command = batch_command(Path("in.jsonl"), Path("out.jsonl"), model_dir=Path("m"), policy_path=Path("p.yaml"))
    assert command[1:] == ["-m", "pipeline.cli", "batch", "--in", "in.jsonl", "--out", "out.jsonl", "--no-progress",
                           "--backend", "vllm-local", "--model", "m", "--policy", "p.yaml"]


def _write_lines(path: Path, records: list[dict[str, object]]) -> None:
    path.write_bytes(b"".join(codec.dumps(r) + b"\n" for r in records))


def test_posts_are_distinct_and_the_output_check_takes_verdicts_and_unadjudicated_together(tmp_path: Path) -> None:
    posts = tmp_path / "posts.jsonl"
    ids = write_posts(posts, 50, tag="t", seed=1)
    rows = [codec.loads(line) for line in posts.read_bytes().splitlines()]
    assert ids == {f"t-{i}" for i in range(50)} == {row["id"] for row in rows}
    assert len({row["text"] for row in rows}) == 50

    outputs = Outputs.beside(tmp_path / "out.jsonl")
    _write_lines(outputs.verdicts, [{"post_id": f"t-{i}"} for i in range(45)])
    _write_lines(outputs.unadjudicated, [{"post": {"id": f"t-{i}"}} for i in range(45, 50)])
    assert check_batch_outputs(outputs, ids) == (45, 5)

    outputs.unadjudicated.unlink()  # the batch removes an empty side file
    with pytest.raises(RuntimeError, match="5 ids missing"):
        check_batch_outputs(outputs, ids)

    _write_lines(outputs.unadjudicated, [{"post": {"id": f"t-{i}"}} for i in range(44, 50)])
    with pytest.raises(RuntimeError, match="1 duplicates"):
        check_batch_outputs(outputs, ids)

    _write_lines(outputs.unadjudicated, [{"post": {"id": f"t-{i}"}} for i in range(45, 50)])
    _write_lines(outputs.dead_letters, [{"error": "bad"}])
    with pytest.raises(RuntimeError, match="1 dead letters"):
        check_batch_outputs(outputs, ids)


async def test_sizes_are_checked_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="small < large"):
        await run_batch_bench(Console(file=None), model_dir=tmp_path, policy_path=tmp_path / "p.yaml",
                              settings=Settings(), batch_posts=(5000, 1000))


def test_benchmarks_md_has_the_section_the_suite_rewrites() -> None:
    text = (REPO / "BENCHMARKS.md").read_text()

    assert text.index("<!-- bench:pipeline:end -->") < text.index("<!-- bench:batch:start -->") \
        < text.index("<!-- bench:batch:end -->")


@pytest.mark.tools
def test_the_process_tree_sample_counts_the_children(spawn: list[subprocess.Popen[bytes]]) -> None:
    """What the bench measures and production batch does not: the engine core is a child process."""
    tree = ProcessTreeRss(os.getpid())
    alone = tree.peak_bytes()
    assert alone > 20 * MIB
    child = subprocess.Popen([sys.executable, "-c", "b = bytearray(96 * 2**20); print('ready', flush=True); "
                              "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    spawn.append(child)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        assert tree.peak_bytes() >= alone + 96 * MIB
    finally:
        child.kill()
        child.communicate()  # reaps it and closes the pipes
    assert ProcessTreeRss.scope.startswith("the batch process and its children")
