"""The reliability bench, short: worker processes SIGKILLed at random on the real broker, and the exact account.

2,000 records (1% malformed, incl. large ones where the broker takes them) published at a steady rate while two
classify workers (the classify service with the zero-cost classifier, each a process of its own) and one
adjudicate worker (``modcascade worker adjudicate`` on the scripted frontier) run; three SIGKILLs of a random
one, each restarted at once. Then every output topic is read completely: no input may be lost, every malformed
one is dead-lettered, nothing valid is, and the duplicates the replays made are counted exactly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.bench.reliability import ChaosOptions, run_chaos
from pipeline.bench.reliability_report import ReliabilityResult, render_markdown
from pipeline.settings import Settings
from tests.support.cascade import REPO
from tests.support.frontier import MessagesServer
from tests.support.reliability import chaos_verdict

pytestmark = pytest.mark.broker

LARGE_MB = (1.0, 2.0)
"""Records over 1 MB: the embedded broker takes them; a real Kafka refuses them at ``message.max.bytes``."""
SEED = 8
"""Its three kills hit the adjudicate worker and each classify worker (victims are drawn from the seed)."""


@pytest.fixture
def settings(kafka_settings: Settings, tmp_path: Path) -> Settings:
    policy = tmp_path / "policy.yaml"
    shutil.copy(REPO / "policies" / "default.yaml", policy)
    return kafka_settings.model_copy(update={
        "policy_path": policy, "worker": kafka_settings.worker.model_copy(update={"batch_max_posts": 64})})


async def test_random_sigkills_lose_nothing_and_every_duplicate_is_counted(settings: Settings,
                                                                           tmp_path: Path) -> None:
    async with MessagesServer(default=chaos_verdict) as frontier:
        options = ChaosOptions(posts=2000, kills=3, seed=SEED, malformed=20,
                               large_mb=LARGE_MB if settings.uses_embedded_broker else (), classify_workers=2,
                               backend="fake", frontier_url=frontier.url, rate_per_s=150, min_gap_s=2.0,
                               stall_s=90.0)
        result = await run_chaos(settings, options, scratch=tmp_path, broker="test broker")
        assert frontier.requests, "the adjudicate worker called the frontier"

    report = render_markdown(result, machine="test", date="today")
    assert result.completed and not result.lost, report
    assert not result.crashes, report  # no worker exits on its own: no input stops the stream
    assert sorted(k.worker for k in result.kills) == ["adjudicate-0", "classify-0", "classify-1"], report
    assert result.malformed == 20 and result.malformed_dead_lettered == 20, report
    assert result.malformed_with_verdict == 0 and result.valid_dead_lettered == 0, report
    assert result.routes.get("frontier", 0) > 0, report
    assert result.conflicting == 0, report  # a replayed post is decided the same way
    _assert_duplicates_exact(result)
    assert "| **lost** (no final verdict and no dead letter) | **0** |" in report


def _assert_duplicates_exact(result: ReliabilityResult) -> None:
    """Per topic: the records read = one per id that came out + the duplicates counted; and the duplicates are
    what the kills replayed (each kill re-reads at most one uncommitted batch per partition the worker held)."""
    verdicts = result.duplicates["verdicts"]
    dead = result.duplicates["dead_letter"]
    ended_valid = result.valid - len([k for k in result.lost if not k.startswith("bad-")])
    assert result.records["verdicts"] == ended_valid + verdicts.total
    assert result.records["dead_letter"] == result.malformed + dead.total
    assert result.malformed_dead_lettered_once == result.malformed - dead.ids
    for d in result.duplicates.values():
        assert 0 <= d.after_last_kill <= d.total and d.ids <= d.total
