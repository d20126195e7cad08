"""The pipeline benchmark's ceiling measurement (``modcascade bench --suites pipeline``) on the session broker,
small: the result is well formed and every post came out once (no timing thresholds: this is not a benchmark)."""

from __future__ import annotations

from pipeline.bench.pipeline import CEILING_BATCH, measure_ceiling, render_markdown
from pipeline.settings import Settings
from tests.support.cascade import REPO


async def test_the_ceiling_run_moves_every_post_once(kafka_settings: Settings) -> None:
    # measure_ceiling reads the output topics back and raises unless each post id has exactly one output.
    run = await measure_ceiling(kafka_settings, policy_path=REPO / "policies" / "default.yaml", n_posts=3000)

    assert run.posts == 3000
    assert run.batch_max_posts == CEILING_BATCH
    assert run.seconds > 0
    assert run.posts_per_s > 0


def test_the_report_states_goals_and_whether_they_were_met() -> None:
    from pipeline.bench.pipeline import Latency, PipelineBenchResult, Run

    result = PipelineBenchResult(
        ceiling=Run(100_000, 8.0, 2000), raw=Run(2000, 6.0, 256), pipeline=Run(2000, 7.0, 256),
        latency=Latency(140.0, 2800, 20.0, 120.0, 400.0, 650.0, 256, 50), model="m", broker="embedded tansu",
        http_batch_size=64, http_max_connections=4)

    text = render_markdown(result, machine="test machine", date="2026-01-01")

    assert "12,500 posts/s" in text and "0.86 x raw" in text
    assert "p50 120 ms, p99 400 ms" in text
    assert result.ceiling_met and not result.ratio_met
    assert "**no**" in text
