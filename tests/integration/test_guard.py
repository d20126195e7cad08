"""The action guard end to end on the broker: the classify worker (in-process, a fake classifier whose scores switch)
and the drift monitor (``modcascade worker monitor``, a process) on the same topics.

A model that starts blocking everything: the monitor's block_rate alert trips the spam guard within a window, the
worker escalates later spam blocks instead (marked ``guard``), no post is lost, and once the model is rolled back
and an operator clears the guard (``modcascade guard clear``) spam is blocked as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline import codec
from pipeline.app.guard import guard_clear, guard_status
from pipeline.backends.fake import FakeClassifier
from pipeline.kafka.control import publish_guards, read_guards
from pipeline.kafka.readback import TopicReader
from pipeline.metrics import Metrics
from pipeline.process import free_port
from pipeline.records import AdjudicationRequest, GuardState, Verdict, utcnow
from pipeline.services import run_classify_worker
from pipeline.settings import Settings
from tests.support import REPO
from tests.support.cascade import cascade_settings
from tests.support.kafka import ProducerFactory, unique
from tests.support.policies import default_policy_with_monitor
from tests.support.processes import metric_samples, start_worker
from tests.support.workers import worker_env

pytestmark = pytest.mark.broker

LABELS = ("safe", "spam", "harassment", "hate", "sexual", "violence", "self_harm")
WINDOW_S = 2
STARTUP_S = 90.0


def fixed(**top: float) -> dict[str, float]:
    rest = (1.0 - sum(top.values())) / (len(LABELS) - len(top))
    return {label: top.get(label, rest) for label in LABELS}


SPAM, SAFE = fixed(spam=0.96), fixed(safe=0.97)


class Model:
    """A classifier that blocks about 5% of posts as spam while ``good``, and every post once it goes bad."""

    def __init__(self) -> None:
        self.good = True
        self.classifier = FakeClassifier(LABELS, rule=self.rule)

    def rule(self, text: str) -> dict[str, float]:
        if not self.good:
            return SPAM
        return SPAM if hashlib.sha256(text.encode()).digest()[0] < 13 else SAFE


def guard_policy(tmp_path: Path) -> Path:
    return default_policy_with_monitor(tmp_path, {
        "window_s": WINDOW_S, "lateness_s": 0.5, "trailing_windows": 3, "min_posts": 40, "min_events": 10,
        "block_rate_factor": 3.0})



def window_end(port: int) -> float:
    """The end of the last window the monitor evaluated (0: none yet, or not serving yet)."""
    return max(metric_samples(port, "modcascade_monitor_window_end_seconds"), default=0.0)


async def post_for(producer_factory: ProducerFactory, topic: str, seconds: float, tag: str,
                   rate: float = 60.0) -> list[str]:
    """Publish posts at ``rate`` per second for ``seconds``; their ids."""
    producer = await producer_factory()
    ids: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = [f"{tag}-{len(ids) + i}" for i in range(int(rate / 10))]
        await asyncio.gather(*[await producer.send(topic, codec.dumps({"id": i, "text": f"post {i}"}), key=i.encode())
                               for i in batch])
        ids += batch
        await asyncio.sleep(0.1)
    return ids


async def test_a_model_that_blocks_everything_trips_the_guard_and_clearing_it_restores_blocking(
    kafka_settings: Settings, _session_topics: list[str], producer_factory: ProducerFactory,
    spawn: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    settings = await cascade_settings(kafka_settings, guard_policy(tmp_path), _session_topics, batch_max_posts=50,
                                      batch_max_wait_ms=20)
    topics = settings.topics.all()
    env = worker_env(settings) | {
        "MODCASCADE_KAFKA_PARTITIONS": "1", "MODCASCADE_MONITOR_APP_ID": unique("guard-monitor"),
        "MODCASCADE_MONITOR_DATA_DIR": str(tmp_path / "monitor"), "MODCASCADE_MONITOR_TICK_S": "0.2",
        "MODCASCADE_MONITOR_BATCH_MAX_WAIT_MS": "100", "MODCASCADE_METRICS_PORT": str(free_port()),
        "MODCASCADE_LOG_LEVEL": "warning"}
    metrics_port = int(env["MODCASCADE_METRICS_PORT"])
    log = tmp_path / "monitor.log"
    monitor = start_worker("monitor", env, log)
    spawn.append(monitor)

    model = Model()
    metrics = Metrics.create(CollectorRegistry())
    stop, ready = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(run_classify_worker(settings, stop, classifier=model.classifier, metrics=metrics,
                                                     on_ready=ready.set))
    ids: list[str] = []
    try:
        await asyncio.wait_for(ready.wait(), 30)
        # Normal traffic until the monitor has evaluated a few windows of it (its reference).
        began, deadline = time.time(), time.monotonic() + STARTUP_S
        while await asyncio.to_thread(window_end, metrics_port) < began + 3 * WINDOW_S:
            assert monitor.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, f"the monitor evaluated no window; log:\n{log.read_text()[-4000:]}"
            ids += await post_for(producer_factory, topics["posts"], WINDOW_S, "good")
        # The model goes bad: everything scores as spam.
        model.good, switched = False, time.time()
        async with TopicReader.open(settings, [topics["control"]]) as control:
            deadline = time.monotonic() + 6 * WINDOW_S + 10
            while not await control.fetch(0.05):
                assert time.monotonic() < deadline, f"the guard never tripped; monitor log:\n{log.read_text()[-4000:]}"
                ids += await post_for(producer_factory, topics["posts"], 0.5, "bad")
            tripped = codec.decode(control.messages[0].value or b"", GuardState)
        assert (tripped.policy, tripped.category, tripped.tripped, tripped.by) == ("default", "spam", True, "monitor")
        assert tripped.window_start is not None
        # Within a window: the window that tripped it is the one the model went bad in, or the next.
        assert tripped.window_start.timestamp() <= switched + WINDOW_S
        assert tripped.block_rate is not None and tripped.block_rate > 3 * (tripped.reference or 0.0)
        print(f"\nguard tripped {tripped.changed_at.timestamp() - switched:.1f} s after the model went bad "
              f"(windows of {WINDOW_S} s; block rate {tripped.block_rate:.0%} vs reference {tripped.reference:.1%})")

        # The worker follows the control topic: posts from now on are escalated, not blocked.
        await asyncio.sleep(1.5)
        guarded_from = utcnow()
        ids += await post_for(producer_factory, topics["posts"], 2.0, "guarded")
        out = io.StringIO()
        assert [s.key for s in await guard_status(settings, out)] == ["default/spam"]
        assert "default/spam: TRIPPED by monitor" in out.getvalue()
        assert metrics.registry.get_sample_value("modcascade_guard_tripped",
                                                 {"policy": "default", "category": "spam"}) == 1

        # Roll the model back and clear the guard: spam is blocked again.
        model.good = True
        await guard_clear(settings, out, policy="default", category="spam", note="model rolled back")
        assert "cleared default/spam" in out.getvalue()
        await asyncio.sleep(1.5)
        cleared_from = utcnow()
        ids += await post_for(producer_factory, topics["posts"], 4.0, "after")

        async with TopicReader.open(settings, [topics["verdicts"], topics["adjudication"]]) as reader:
            wanted = set(ids)

            def settled(seen: list[object]) -> bool:
                return wanted <= {(m.key or b"").decode() for m in reader.messages}

            await reader.read_until(settled, timeout_s=60, quiet_s=0.5)
            outputs = [(m.topic, m.value or b"") for m in reader.messages]
        assert monitor.poll() is None, log.read_text()[-4000:]
        assert not worker.done(), worker
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)

    verdicts = [codec.decode(v, Verdict) for t, v in outputs if t == topics["verdicts"]]
    requests = [codec.decode(v, AdjudicationRequest) for t, v in outputs if t == topics["adjudication"]]
    # No post lost: each has a verdict or an adjudication request.
    assert {v.post_id for v in verdicts} | {r.post.id for r in requests} == set(ids)
    guarded = [p for p in ids if p.startswith("guarded-")]
    escalated = {r.post.id: r for r in requests if r.guard == "spam"}
    assert set(guarded) <= set(escalated), "a post of the bad model while guarded was not escalated"
    assert all(r.candidate_category == "spam" for r in escalated.values())
    blocked_while_guarded = [v for v in verdicts
                             if v.decision == "block" and guarded_from <= v.decided_at < cleared_from]
    assert not blocked_while_guarded, f"{len(blocked_while_guarded)} posts blocked under a tripped guard"
    after = [v for v in verdicts if v.post_id.startswith("after-")]
    assert {r.post.id for r in requests} & {v.post_id for v in after} == set()
    assert [v for v in after if v.decision == "block"], "no spam was blocked after the guard was cleared"
    assert all(v.guard is None for v in after)
    assert metrics.registry.get_sample_value("modcascade_guard_tripped", {"policy": "default", "category": "spam"}) == 0
    assert (metrics.registry.get_sample_value("modcascade_guard_diverted_total",
                                              {"policy": "default", "category": "spam", "to": "adjudication"}) or 0) \
        >= len(guarded)


async def test_a_worker_started_after_a_trip_reads_it_and_a_published_guard_takes_effect(
    kafka_settings: Settings, _session_topics: list[str], tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.yaml"
    shutil.copy(REPO / "policies" / "default.yaml", policy)
    settings = await cascade_settings(kafka_settings, policy, _session_topics)
    trip = GuardState(policy="default", category="spam", tripped=True, by="monitor", reason="test")
    await publish_guards(settings, [trip, GuardState(policy="default", category="hate", tripped=True, by="monitor")])
    await publish_guards(settings, [GuardState(policy="default", category="hate", tripped=False, by="operator")])
    states = await read_guards(settings)
    assert [(s.key, s.tripped) for s in states] == [("default/hate", False), ("default/spam", True)]
    out = io.StringIO()
    assert [s.key for s in await guard_status(settings, out, category="spam")] == ["default/spam"]
    assert "default/hate" not in out.getvalue()
