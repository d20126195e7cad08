"""The drift monitor on the broker (``modcascade worker monitor`` as a process, faust on the embedded broker).

Verdicts and adjudication requests are published directly, each stamped with its own time, so a test lays out
several windows (of a few seconds) at once: a stream whose small-model scores shift mid-stream, one that stays the
same, and a window the monitor is killed in the middle of.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from pipeline import codec
from pipeline.kafka import make_admin
from pipeline.metrics import Metrics
from pipeline.monitor.layout import fixed_layout
from pipeline.monitor.windows import window_start
from pipeline.policy import PolicyStore, decide, load_policy
from pipeline.process import free_port
from pipeline.records import AdjudicationRequest, Alert, DeadLetter, Post, Record, Verdict, verdict_id
from pipeline.settings import Settings, TopicNames
from tests.support import REPO
from tests.support.kafka import ConsumerFactory, ProducerFactory, TopicFactory, unique
from tests.support.policies import default_policy_with_monitor
from tests.support.processes import metric_sample, start_worker

pytestmark = pytest.mark.broker

POLICY = load_policy(REPO / "policies" / "default.yaml")
LABELS = (POLICY.taxonomy.safe, *POLICY.taxonomy.categories)
STARTUP_S = 90.0  # import, group join (~4 s), table recovery


def monitor_policy(tmp_path: Path, **overrides: object) -> Path:
    """The default policy with short windows (seconds) and a small minimum of posts."""
    settings = {"window_s": 5, "lateness_s": 1, "trailing_windows": 3, "min_posts": 100, **overrides}
    return default_policy_with_monitor(tmp_path, settings)



@dataclass
class Monitor:
    """A monitor process's settings: its topics, app id, policy and metrics port."""

    settings: Settings
    topics: dict[str, str]
    app_id: str
    policy_path: Path
    data_dir: Path
    metrics_port: int

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("MODCASCADE_") or k.startswith(("MODCASCADE_KAFKA_SASL", "MODCASCADE_KAFKA_SSL",
                                                                    "MODCASCADE_KAFKA_SECURITY"))}
        env.update({
            "PYTHONUNBUFFERED": "1",
            "MODCASCADE_KAFKA_BOOTSTRAP": self.settings.bootstrap,
            "MODCASCADE_KAFKA_IDEMPOTENCE": str(self.settings.idempotence).lower(),
            "MODCASCADE_KAFKA_PARTITIONS": "1",
            "MODCASCADE_TOPIC_PREFIX": "",
            "MODCASCADE_TOPIC_VERDICTS": self.topics["verdicts"],
            "MODCASCADE_TOPIC_ADJUDICATION": self.topics["adjudication"],
            "MODCASCADE_TOPIC_DEAD_LETTER": self.topics["dead_letter"],
            "MODCASCADE_TOPIC_ALERTS": self.topics["alerts"],
            "MODCASCADE_MONITOR_APP_ID": self.app_id,
            "MODCASCADE_MONITOR_DATA_DIR": str(self.data_dir),
            "MODCASCADE_MONITOR_TICK_S": "0.2",
            "MODCASCADE_MONITOR_BATCH_MAX_WAIT_MS": "100",
            "MODCASCADE_POLICY_PATH": str(self.policy_path),
            "MODCASCADE_METRICS_PORT": str(self.metrics_port),
            "MODCASCADE_LOG_LEVEL": "warning",
        })
        return env

    def start(self, log: Path) -> subprocess.Popen[bytes]:
        return start_worker("monitor", self.env(), log)

    def sample(self, name: str, **labels: str) -> float | None:
        """One sample of the monitor's metrics endpoint (None: not there, or not serving yet)."""
        return metric_sample(self.metrics_port, name, **labels)

    def window_end(self, policy: str) -> float:
        """The end of the last window the monitor evaluated for ``policy`` (0: none yet or not serving)."""
        return self.sample("modcascade_monitor_window_end_seconds", policy=policy) or 0.0


@pytest.fixture
async def monitor(kafka_settings: Settings, topic_factory: TopicFactory, tmp_path: Path) -> Monitor:
    topics = {role: await topic_factory(f"monitor-{role}") for role in ("verdicts", "adjudication", "dead_letter",
                                                                          "alerts")}
    return Monitor(kafka_settings, topics, unique("monitor"), monitor_policy(tmp_path), tmp_path / "monitor-data",
                   free_port())


def cascade_outputs(policy_name: str, at: float, spam_mean: float, rng: random.Random, n: int,
                    tag: str) -> list[tuple[str, Record]]:
    """What the classify worker publishes for ``n`` posts whose spam score is around ``spam_mean``, all at time
    ``at``: a verdict (decided by the policy's bands), or an adjudication request for the band."""
    when = datetime.fromtimestamp(at, UTC)
    out: list[tuple[str, Record]] = []
    for i in range(n):
        spam = min(max(rng.gauss(spam_mean, 0.08), 0.0), 0.99)
        # Only the spam score moves; the other categories keep a small constant score, safe takes the rest.
        scores = dict.fromkeys(LABELS, 0.005) | {"spam": round(spam, 6)}
        scores["safe"] = round(1 - sum(v for k, v in scores.items() if k != "safe"), 6)
        post_id = f"{tag}-{i}"
        outcome = decide(scores, POLICY)
        if outcome.kind == "escalate":
            out.append(("adjudication", AdjudicationRequest(
                post=Post(id=post_id, text="a post"), scores=scores, candidate_category=outcome.category,
                model="m", model_version="1", policy=policy_name, policy_version="v1", ingested_at=when,
                enqueued_at=when)))
        else:
            out.append(("verdicts", Verdict(
                verdict_id=verdict_id(post_id, "v1"), post_id=post_id, decision=outcome.kind,
                category=outcome.category, scores=scores, route="slm", model="m", model_version="1",
                policy=policy_name, policy_version="v1", latency_ms=5.0, cost_usd=0.0, decided_at=when)))
    return out


async def publish(producer_factory: ProducerFactory, topics: dict[str, str],
                  records: list[tuple[str, Record]]) -> None:
    producer = await producer_factory()
    sends = [await producer.send(topics[role], codec.encode(record)) for role, record in records]
    await asyncio.gather(*sends)


async def read_alerts(consumer_factory: ConsumerFactory, topic: str, idle_s: float = 1.0) -> list[Alert]:
    consumer = await consumer_factory(topic)
    alerts: list[Alert] = []
    while batches := await consumer.getmany(timeout_ms=int(idle_s * 1000)):
        alerts += [codec.decode(r.value or b"", Alert) for rs in batches.values() for r in rs]
    return alerts


async def wait_for(condition: object, process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"monitor exited with {process.returncode}:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"timed out; monitor log:\n{log.read_text()[-4000:]}"
        await asyncio.sleep(0.2)


async def test_a_score_shift_raises_a_drift_alert_within_two_windows_and_a_steady_stream_none(
    monitor: Monitor, producer_factory: ProducerFactory, consumer_factory: ConsumerFactory,
    spawn: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    size, windows, shift_at = 5.0, 9, 6  # windows 0-5 as trained, 6-8 shifted (for the drifting policy only)
    base = window_start(time.time(), size) - size * (windows + 2)
    rng = random.Random(18)
    records: list[tuple[str, Record]] = []
    for w in range(windows):
        at = base + w * size + size / 2
        records += cascade_outputs("steady", at, 0.08, rng, 200, f"steady-{w}")
        records += cascade_outputs("drifting", at, 0.08 if w < shift_at else 0.45, rng, 200, f"drift-{w}")
    await publish(producer_factory, monitor.topics, records)

    log = tmp_path / "monitor.log"
    process = monitor.start(log)
    spawn.append(process)
    last_end = base + windows * size
    await wait_for(lambda: min(monitor.window_end("steady"), monitor.window_end("drifting")) >= last_end,
                   process, log, STARTUP_S)
    alerts = await read_alerts(consumer_factory, monitor.topics["alerts"])

    assert not [a for a in alerts if a.policy == "steady"], "an unchanged stream raised alerts"
    drift = [a for a in alerts if a.policy == "drifting" and a.kind == "drift"]
    assert drift, f"no drift alert; alerts: {[(a.kind, a.category, a.window_start) for a in alerts]}"
    assert {a.category for a in drift} == {"spam"}
    first = min(a.window_start.timestamp() for a in drift)
    assert base + shift_at * size <= first < base + (shift_at + 2) * size, "not within two windows of the shift"
    assert all(a.window_start.timestamp() >= base + shift_at * size for a in alerts), "an alert before the shift"
    assert all(a.value > a.threshold and a.count >= 100 for a in drift)
    assert len({a.alert_id for a in alerts}) == len(alerts)


async def committed(settings: Settings, group: str, topics: list[str]) -> int:
    admin = make_admin(settings)
    await admin.start()
    try:  # partitions named explicitly: the embedded broker cannot answer an OffsetFetch for "all"
        offsets = await admin.list_consumer_group_offsets(group, partitions=[TopicPartition(t, 0) for t in topics])
    finally:
        await admin.close()
    return sum(max(0, meta.offset) for meta in offsets.values())


async def wait_until_committed(monitor: Monitor, count: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until the monitor's group has committed ``count`` records of verdicts and adjudication."""
    inputs = [monitor.topics["verdicts"], monitor.topics["adjudication"]]
    deadline = time.monotonic() + STARTUP_S
    while await committed(monitor.settings, monitor.app_id, inputs) < count:
        assert process.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, f"the monitor did not commit its input; log:\n{log.read_text()[-4000:]}"
        await asyncio.sleep(0.5)


async def test_a_monitor_killed_mid_window_keeps_the_window_state_from_its_changelog(
    monitor: Monitor, producer_factory: ProducerFactory, consumer_factory: ConsumerFactory,
    spawn: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    size = 10.0
    # The window under test starts a minute from now, so the wall clock cannot close it during the test: only the
    # records' own times do. The two windows before it are the reference.
    policy_path = monitor_policy(tmp_path, window_s=int(size))
    monitor.policy_path = policy_path
    target = window_start(time.time(), size) + 6 * size
    rng = random.Random(4)
    before = cascade_outputs("default", target - 2 * size + 1, 0.08, rng, 200, "ref-a")
    before += cascade_outputs("default", target - size + 1, 0.08, rng, 200, "ref-b")
    before += cascade_outputs("default", target + 2, 0.45, rng, 150, "shift-a")
    await publish(producer_factory, monitor.topics, before)

    log = tmp_path / "monitor.log"
    first = monitor.start(log)
    spawn.append(first)

    await wait_until_committed(monitor, len(before), first, log)
    await wait_for(lambda: monitor.window_end("default") >= target, first, log, 30)  # the reference windows
    await asyncio.sleep(2.0)  # the changelog writes of the last batch are on their way with the commit
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)

    after = cascade_outputs("default", target + 6, 0.45, rng, 150, "shift-b")
    await publish(producer_factory, monitor.topics, after)
    second = monitor.start(log)
    spawn.append(second)
    await wait_until_committed(monitor, len(before) + len(after), second, log)
    # Only then move stream time past the window: what closes it is not under test here, what it counted is.
    await publish(producer_factory, monitor.topics, cascade_outputs("default", target + size + 2, 0.08, rng, 5, "next"))
    await wait_for(lambda: monitor.window_end("default") >= target + size, second, log, 30)

    alerts = await read_alerts(consumer_factory, monitor.topics["alerts"])
    drift = [a for a in alerts if a.kind == "drift"]
    assert [a.window_start.timestamp() for a in drift] == [target], [(a.kind, a.window_start) for a in alerts]
    # 150 posts counted before the kill (recovered from the changelog) + 150 after: nothing lost, nothing twice.
    assert drift[0].count == 300
    assert all(a.window_start.timestamp() == target for a in alerts), "the reference windows alerted"


def dead_letter_window(at: float, records: int, dead: int, tag: str) -> list[tuple[str, Record]]:
    """One window's outputs at time ``at``: ``records`` allow verdicts of policy ``default`` and ``dead`` dead
    letters."""
    when = datetime.fromtimestamp(at, UTC)
    scores = dict.fromkeys(LABELS, 0.005) | {LABELS[0]: 0.97}
    out: list[tuple[str, Record]] = [("verdicts", Verdict(
        verdict_id=verdict_id(f"{tag}-{i}", "v1"), post_id=f"{tag}-{i}", decision="allow", category=None,
        scores=scores, route="slm", model="m", model_version="1", policy="default", policy_version="v1",
        latency_ms=5.0, cost_usd=0.0, decided_at=when)) for i in range(records)]
    out += [("dead_letter", DeadLetter.of(b"{not json", stage="classify.intake", error=ValueError("bad"),
                                          reason="invalid_json").model_copy(update={"failed_at": when}))
            for _ in range(dead)]
    return out


async def test_an_edited_threshold_applies_to_the_next_window_and_a_layout_edit_waits_for_a_restart(
    monitor: Monitor, producer_factory: ProducerFactory, consumer_factory: ConsumerFactory,
    spawn: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    size = 5.0
    monitor_policy(tmp_path, dead_letter_rate_max=0.5)  # the monitor's policy file (monitor.policy_path)
    # Windows half a minute ahead: only the records' own times close them (a record in the window after), never the
    # wall clock, so each is evaluated once its records are in.
    first = window_start(time.time(), size) + 6 * size
    await publish(producer_factory, monitor.topics, dead_letter_window(first + 1, 190, 10, "a"))  # 5% dead letters
    await publish(producer_factory, monitor.topics, dead_letter_window(first + size + 1, 5, 0, "tick-a"))

    log = tmp_path / "monitor.log"
    process = monitor.start(log)
    spawn.append(process)
    await wait_for(lambda: monitor.window_end("default") >= first + size, process, log, STARTUP_S)
    assert not await read_alerts(consumer_factory, monitor.topics["alerts"], idle_s=0.5), "5% is under 50%"

    strict = monitor_policy(tmp_path, dead_letter_rate_max=0.01)  # the same file, edited in place
    version = load_policy(strict).version
    await wait_for(lambda: monitor.sample("modcascade_policy_info", version=version) == 1.0, process, log, 30)
    second = first + 2 * size
    await publish(producer_factory, monitor.topics, dead_letter_window(second + 1, 190, 10, "b"))
    await publish(producer_factory, monitor.topics, dead_letter_window(second + size + 1, 5, 0, "tick-b"))
    await wait_for(lambda: monitor.window_end("default") >= second + size, process, log, 30)

    alerts = await read_alerts(consumer_factory, monitor.topics["alerts"])
    assert [(a.kind, a.window_start.timestamp(), a.threshold) for a in alerts] == [
        ("dead_letter_rate", second, 0.01)]

    monitor_policy(tmp_path, dead_letter_rate_max=0.01, window_s=10)  # needs a restart: refused, the last stays
    await wait_for(lambda: (monitor.sample("modcascade_policy_reload_errors_total") or 0) >= 1, process, log, 30)
    assert monitor.sample("modcascade_policy_info", version=version) == 1.0
    assert process.poll() is None


async def test_offsets_the_stream_skipped_are_read_back_from_the_broker(monitor: Monitor,
                                                                        producer_factory: ProducerFactory) -> None:
    """faust can drop a record around a restart (acknowledged, never handed to the agent): when the stream jumps
    from the next offset to count to a later one, the monitor reads the offsets in between back by itself."""
    from pipeline.monitor.app import MonitorApp  # imports faust

    outputs = cascade_outputs("default", time.time(), 0.08, random.Random(1), 60, "gap")
    verdicts = [(role, record) for role, record in outputs if role == "verdicts"][:6]
    await publish(producer_factory, monitor.topics, verdicts)
    names = TopicNames(prefix="", verdicts=monitor.topics["verdicts"], adjudication=monitor.topics["adjudication"],
                       dead_letter=monitor.topics["dead_letter"], alerts=monitor.topics["alerts"])
    settings = monitor.settings.model_copy(update={"policy_path": monitor.policy_path, "topics": names})
    store = PolicyStore(monitor.policy_path, accept=fixed_layout(str(monitor.policy_path)))
    registry = CollectorRegistry()
    app = MonitorApp(settings, store, metrics=Metrics.create(registry), policy_path=monitor.policy_path)

    records: list[Record] = []
    await app._refetch(monitor.topics["verdicts"], 0, 2, 5, records, time.time())  # delivered 5 while 2 was next
    assert records == [record for _, record in verdicts[2:5]]
    assert registry.get_sample_value("modcascade_monitor_refetched_total",
                                     {"topic": monitor.topics["verdicts"]}) == 3
    assert registry.get_sample_value("modcascade_records_consumed_total", {"topic": monitor.topics["verdicts"]}) == 3
