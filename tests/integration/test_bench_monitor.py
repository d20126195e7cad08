"""The monitor benchmark (``modcascade bench --suites monitor``) on the broker, small: the monitor process counts
every post of the cascade output it is given and the section reports both rates."""

from __future__ import annotations

from pathlib import Path

from pipeline.bench.monitor import MonitorBenchResult, cascade_output, measure_monitor, render_markdown
from pipeline.bench.pipeline import Run
from pipeline.settings import Settings
from tests.support import REPO

POLICY = REPO / "policies" / "default.yaml"


def test_cascade_output_has_the_classify_workers_mix() -> None:
    output = cascade_output(2000, POLICY)
    roles = [role for role, _, _ in output]
    assert len({key for _, key, _ in output}) == 2000
    assert 0.05 < roles.count("adjudication") / 2000 < 0.3 and set(roles) == {"verdicts", "adjudication"}


async def test_the_monitor_bench_counts_every_post(kafka_settings: Settings, tmp_path: Path) -> None:
    run, verdicts, escalations = await measure_monitor(kafka_settings, policy_path=POLICY, n_posts=6000,
                                                       scratch=tmp_path)
    assert verdicts + escalations == 6000 and escalations > 0
    assert 0 < run.posts < 6000 and run.posts_per_s > 0  # timed from the first counted batch, which is excluded
    section = render_markdown(MonitorBenchResult(Run(1000, 0.5, 2000), run, verdicts, escalations, "embedded tansu",
                                                 0.5), machine="test machine", date="2026-12-07")
    assert "| classify worker output, zero-cost classifier (its ceiling) | 1,000 | 2,000 posts/s |" in section
    assert f"{run.posts_per_s:,.0f} posts/s ({run.posts_per_s / 2000:.2f} x the classify ceiling)" in section
