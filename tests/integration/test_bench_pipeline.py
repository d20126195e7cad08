"""The pipeline benchmark's ceiling measurement (``modcascade bench --suites pipeline``) on the session broker,
small: the result is well formed and every post came out once (no timing thresholds: this is not a benchmark)."""

from __future__ import annotations

from pipeline.bench.pipeline import CEILING_BATCH, compare_limit, measure_ceiling, render_markdown
from pipeline.settings import Settings
from tests.support.cascade import REPO


async def test_the_ceiling_run_moves_every_post_once(kafka_settings: Settings) -> None:
    # measure_ceiling reads the output topics back and raises unless each post id has exactly one output.
    run = await measure_ceiling(kafka_settings, policy_path=REPO / "policies" / "default.yaml", n_posts=3000)

    assert run.posts == 3000
    assert run.batch_max_posts == CEILING_BATCH
    assert run.seconds > 0
    assert run.posts_per_s > 0


async def test_the_bare_loop_and_the_worker_alternate_on_the_same_records(kafka_settings: Settings) -> None:
    # Both read their outputs back and raise unless each post id has exactly one output; CPU time is measured.
    limit = await compare_limit(kafka_settings, policy_path=REPO / "policies" / "default.yaml", n_posts=2000, rounds=2)

    assert len(limit.bare) == len(limit.worker) == 2
    assert all(run.posts == 2000 and run.seconds > 0 and run.cpu_s > 0 for run in (*limit.bare, *limit.worker))
    assert limit.ratio > 0 and limit.cpu_ratio > 0


def test_the_report_states_goals_and_whether_they_were_met() -> None:
    from pipeline.bench.pipeline import Latency, LimitComparison, PipelineBenchResult, Run

    limit = LimitComparison(bare=(Run(50_000, 2.0, 2000, 0.8), Run(50_000, 1.6, 2000, 0.9)),
                            worker=(Run(50_000, 4.0, 2000, 2.0), Run(50_000, 4.4, 2000, 2.2)))
    result = PipelineBenchResult(
        limit=limit, raw=Run(2000, 6.0, 256), pipeline=Run(2000, 7.0, 256),
        latency=Latency(140.0, 2800, 20.0, 120.0, 400.0, 650.0, 256, 50), model="m", broker="embedded tansu",
        http_batch_size=64, http_max_connections=4)

    text = render_markdown(result, machine="test machine", date="2026-01-01")

    # Medians of the alternating runs: bare 28,125 posts/s at 0.017 CPU-s per 1,000 posts, the worker 11,932 at 0.042.
    assert "50,000 x 2" in text and "28,125 posts/s; 0.017 CPU-s per 1,000 posts" in text
    assert "11,932 posts/s (0.42 x the bare loop); 0.042 CPU-s per 1,000 posts (2.47 x)" in text
    assert "0.86 x raw" in text and "p50 120 ms, p99 400 ms" in text
    assert result.ceiling_met and not result.limit_met and not result.ratio_met
    assert text.count("**no**") == 2
