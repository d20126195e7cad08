"""The monitor as a faust-streaming app: changelog-backed tumbling-window tables over ``verdicts``,
``adjudication`` and ``dead-letter``, evaluated by a timer, alerts out on ``alerts``.

    agent  take up to MODCASCADE_MONITOR_BATCH_MAX records (or what came in MODCASCADE_MONITOR_BATCH_MAX_WAIT_MS)
           -> decode -> :func:`~pipeline.monitor.tally.tally` -> one table update per (window, statistic)
    timer  every MODCASCADE_MONITOR_TICK_S: for each policy seen, the windows that closed
           (:mod:`~pipeline.monitor.windows`) -> statistics -> rules against the reference -> Alert records
           (sent, then awaited together) and metrics -> the window is marked done; a ``block_rate`` alert also
           trips the category's action guard (:func:`pipeline.policy.trips`: a GuardState on ``control``, per the
           policy's ``guard:`` section), which every classify worker follows (docs/guard.md)

State: ``counts`` is a faust tumbling-window table (``window_s`` from the policy's ``monitor:``), keyed
``policy|statistic``; ``progress`` holds per policy the first window with records and the last one evaluated, and
the next offset to count per input partition. Both
are changelog-backed (topics ``<app_id>-monitor-counts-changelog`` and ``<app_id>-monitor-progress-changelog``) and
kept in memory: a restarted monitor rebuilds them from the changelog before it evaluates anything, so a window
that was open when the monitor was killed keeps what it had counted, and a window already evaluated is not
alerted on again. The tables are partitioned by key (``use_partitioner``), not by the source partitions: run one
monitor replica per app id (it holds every partition; a second replica would see part of the counts).

Undecodable records are skipped (the producers already dead-letter what they cannot read). Offsets are committed
by faust after the fact (at-least-once), so records are delivered again after a rebalance or a restart; the
``progress`` table also keeps the next offset to count per input partition, written after the batch's counts, so a
record delivered again is not counted again (only a kill between those two changelog writes counts a batch twice),
and records the stream skipped (faust drops the records it prefetched before a rebalance, acknowledged) are read
back by the monitor itself.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import codec
from pipeline.errors import RecordError
from pipeline.kafka.clients import faust_credentials
from pipeline.kafka.readback import read_range
from pipeline.metrics import Metrics
from pipeline.monitor.baseline import Reference, load_baseline
from pipeline.monitor.rules import Window, dead_letter_alert, evaluate
from pipeline.monitor.stats import Summary, combine, psi, ratio, stat_names, summarize
from pipeline.monitor.tally import GLOBAL, Tallied, record_time, table_key, tally
from pipeline.monitor.windows import Clock, Watermarks, due_windows
from pipeline.policy import Monitor as MonitorSection
from pipeline.policy import Policy, PolicyStore, trips
from pipeline.records import AdjudicationRequest, Alert, DeadLetter, Verdict, utcnow
from pipeline.settings import Settings

log = logging.getLogger(__name__)

REFETCH_MAX = 100_000
"""The most offsets of one gap in the stream that the monitor reads back by itself (see MonitorApp._refetch)."""

FAUST_LOG_LEVELS = {"debug": "debug", "info": "info", "warning": "warn", "error": "error"}
"""Our log levels as faust's CLI spells them (it has no 'warning')."""


class _At:
    """A point in time handed to the window table in place of a faust event (see :func:`_event_time`)."""

    __slots__ = ("ts",)

    def __init__(self, ts: float) -> None:
        self.ts = ts


def _file_state(path: Path) -> tuple[int, int, int] | None:
    """What tells an edit of ``path`` (following links, as a Kubernetes ConfigMap swap does): inode, size, mtime."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


def _event_time(event: Any) -> float:
    # The table's time relativity: every read and write passes an _At, so a batch of records is counted in the
    # windows of the records' own times rather than that of the last event of the batch.
    return float(event.ts)


class MonitorApp:
    """The faust app of ``modcascade worker monitor``, built from settings and the policy in ``store`` (its
    ``monitor:`` thresholds and taxonomy). The policy is hot-reloaded: every tick looks at the file, and an edit the
    store accepts applies from the next evaluated window (:mod:`pipeline.monitor.layout` says what needs a restart;
    build the store with its ``fixed_layout`` hook). :meth:`run` blocks until the worker is stopped (SIGTERM/SIGINT)."""

    def __init__(self, settings: Settings, store: PolicyStore, *, metrics: Metrics,
                 policy_path: Path | None = None) -> None:
        import faust

        self.settings, self.store, self.metrics = settings, store, metrics
        policy = store.current
        self._file_seen = _file_state(store.path)
        self.categories: Sequence[str] = policy.taxonomy.categories
        self.stats = stat_names(self.categories, self.config.score_bins)
        self.baseline: Reference | None = None
        if self.config.reference == "baseline":
            assert self.config.baseline is not None  # the policy validates it
            path = Path(self.config.baseline)
            if not path.is_absolute() and policy_path is not None:
                path = policy_path.parent / path
            self.baseline = Reference.of_baseline(load_baseline(path, bins=self.config.score_bins), self.categories)
        topics = settings.topics.all()
        self.topics = topics
        partitions = settings.kafka.partitions
        self.app = faust.App(
            settings.monitor.app_id,
            broker=f"kafka://{settings.bootstrap}",
            broker_credentials=faust_credentials(settings.kafka),
            store="memory://",
            datadir=str(settings.monitor.data_dir),
            web_enabled=False,
            topic_partitions=partitions,
            topic_replication_factor=settings.kafka.replication_factor,
            producer_acks=-1,
            consumer_auto_offset_reset="earliest",
            stream_buffer_maxsize=max(4096, settings.monitor.batch_max * 2),
            table_cleanup_interval=max(1.0, float(self.config.window_s)),
            # Join in seconds (faust's defaults wait ~30 s for the first rebalance on a fresh group).
            broker_rebalance_timeout=5,
            broker_session_timeout=6,
            broker_heartbeat_interval=1,
        )
        window = float(self.config.window_s)
        keep = window * (self.config.trailing_windows + 3) + self.config.lateness_s
        table: Any = self.app.Table(  # faust's stubs lack WindowWrapper.relative_to
            "monitor-counts", default=int, key_type=str, value_type=int, partitions=partitions, use_partitioner=True,
        ).tumbling(window, expires=keep)
        self.counts: Any = table.relative_to(_event_time)
        self.progress = self.app.Table(
            "monitor-progress", default=float, key_type=str, value_type=float, partitions=partitions,
            use_partitioner=True,
        )
        self.control_topic = self.app.topic(topics["control"], key_type=bytes, value_type=bytes,
                                            key_serializer="raw", value_serializer="raw")
        self.alerts_topic = self.app.topic(topics["alerts"], key_type=bytes, value_type=bytes, key_serializer="raw",
                                           value_serializer="raw")
        source = self.app.topic(topics["verdicts"], topics["adjudication"], topics["dead_letter"], key_type=bytes,
                                value_type=bytes, key_serializer="raw", value_serializer="raw")
        self.unsealed = False  # table writes since the last seal (see _seal)
        self.last_record_wall = time.time()
        self.watermarks = Watermarks(idle_s=max(self.config.lateness_s, 1.0))
        self.app.agent(source, name="monitor-tally", concurrency=1)(self._tally)
        self.app.timer(interval=settings.monitor.tick_s, name="monitor-evaluate")(self._evaluate)

    @property
    def policy(self) -> Policy:
        """The policy in force (hot-reloaded; its layout is the one the app was built with)."""
        return self.store.current

    @property
    def config(self) -> MonitorSection:
        """The policy's ``monitor:`` section in force."""
        return self.store.current.monitor

    def reload_policy(self) -> bool:
        """Reload the policy when its file changed since the last look (a stat, not a read, on every tick); True
        when a new version is now in force. A rejected edit keeps the last good policy (logged, and counted in the
        policy metrics)."""
        state = _file_state(self.store.path)
        if state == self._file_seen:
            return False
        self._file_seen = state
        return self.store.reload()

    # -- the agent -----------------------------------------------------------------------------------------------

    def _decode(self, topic: str, value: bytes) -> Tallied | None:
        model: type[Tallied]
        if topic == self.topics["verdicts"]:
            model = Verdict
        elif topic == self.topics["adjudication"]:
            model = AdjudicationRequest
        else:
            model = DeadLetter
        try:
            return codec.decode(value, model)
        except RecordError:
            return None

    async def _tally(self, stream: Any) -> None:
        wait_s = self.settings.monitor.batch_max_wait_ms / 1000
        async for events in stream.take_events(self.settings.monitor.batch_max, within=wait_s):
            records: list[Tallied] = []
            now = time.time()
            offsets: dict[str, int] = {}  # the next offset to count, per input partition
            for event in events:
                message = event.message
                position = f"offset|{message.topic}|{message.partition}"
                if position not in offsets:
                    offsets[position] = int(self.progress[position])
                if message.offset < offsets[position]:
                    continue  # counted already: delivered again after a rebalance or a restart
                if message.offset > offsets[position]:
                    await self._refetch(message.topic, message.partition, offsets[position], message.offset, records,
                                        now)
                offsets[position] = message.offset + 1
                self._take(message.topic, message.partition, event.value, records, now)
            self.add(records)
            for position, offset in offsets.items():  # after the counts: a kill in between counts again, never less
                self.progress[position] = offset
            self.unsealed = self.unsealed or bool(offsets)

    def _take(self, topic: str, partition: int, value: bytes | None, records: list[Tallied], now: float) -> None:
        self.metrics.records_consumed.labels(topic).inc()
        record = self._decode(topic, value or b"")
        if record is not None:
            records.append(record)
            self.watermarks.advance((topic, partition), record_time(record).timestamp(), now)

    async def _refetch(self, topic: str, partition: int, start: int, end: int, records: list[Tallied],
                       now: float) -> None:
        """Read offsets ``start`` up to ``end`` of a partition by ourselves and take them into ``records``.

        Called when the stream delivered offset ``end`` of a partition while the next one to count is ``start``.
        faust leaves such gaps: it drops records it has prefetched while its flow is stopped (a rebalance, table
        recovery) or that belong to an earlier consumer generation, and acknowledges them, so its seek back to the
        committed offset can land after them. Counting on would lose them for good, since ``progress`` only moves
        forward. A gap can also be
        a hole in the log (a compacted ``verdicts`` topic has one where a post was decided twice); reading it back
        finds nothing and costs one short read. At most :data:`REFETCH_MAX` offsets are read back, the newest.
        """
        if end - start > REFETCH_MAX:
            log.warning("%s[%d]: the stream skipped offsets %d..%d; reading back only the last %d (offsets before "
                        "%d are not counted)", topic, partition, start, end - 1, REFETCH_MAX, end - REFETCH_MAX)
            start = end - REFETCH_MAX
        missed = await read_range(self.settings, topic, partition, start, end, client="monitor gap reader")
        if missed:
            log.warning("%s[%d]: the stream skipped offsets %d..%d; read %d record(s) back", topic, partition, start,
                        end - 1, len(missed))
            self.metrics.monitor_refetched.labels(topic).inc(len(missed))
        for message in missed:
            self._take(topic, partition, message.value, records, now)

    def add(self, records: Sequence[Tallied]) -> None:
        """Count ``records`` into the window table (called by the agent; one table update per window and key)."""
        if not records:
            return
        counts = tally(records, categories=self.categories, safe=self.policy.taxonomy.safe,
                       bins=self.config.score_bins, window_s=self.config.window_s)
        firsts: dict[str, float] = {}
        for (start, policy, stat), n in counts.items():
            self.counts[table_key(policy, stat)].apply(operator.add, n, event=_At(start))
            firsts[policy] = min(start, firsts.get(policy, start))
        for policy, start in firsts.items():
            known = self.progress[f"first|{policy}"]
            if not known or start < known:
                self.progress[f"first|{policy}"] = start
        self.last_record_wall = time.time()

    # -- the timer -----------------------------------------------------------------------------------------------

    def _ready(self) -> bool:
        recovery: Any = getattr(self.app.tables, "recovery")  # noqa: B009 (not in faust's TableManagerT stubs)
        return bool(recovery.completed.is_set()) and not self.app.in_recovery and not self.app.rebalancing

    def _count(self, policy: str, stat: str, start: float) -> int:
        return int(self.counts[table_key(policy, stat)].value(event=_At(start)))

    def summary(self, policy: str, start: float) -> Summary:
        """The statistics of ``policy`` in the window starting at ``start`` (epoch seconds)."""
        counts = {stat: self._count(policy, stat, start) for stat in self.stats}
        return summarize(counts, categories=self.categories, bins=self.config.score_bins)

    def _reference(self, policy: str, start: float) -> Reference | None:
        if self.baseline is not None:
            return self.baseline
        size = self.config.window_s
        previous = [self.summary(policy, start - size * k) for k in range(1, self.config.trailing_windows + 1)]
        previous = [s for s in previous if s.posts or s.final]
        return Reference.of_summary(combine(previous)) if previous else None

    async def _seal(self) -> None:
        """Write one marker record to each changelog after the last real writes.

        A table is recovered up to its changelog's end offset. The embedded broker (tansu 0.6.0) answers that
        with the base offset of the partition's last record batch, not the high watermark, so the last batch is
        never replayed. The marker must therefore land in a record batch of its own, after the real writes: the
        producer is flushed first (every write made so far acknowledged), so the marker cannot join a batch still
        waiting behind a slow request. A write made meanwhile marks the tables unsealed again, for the next tick. On
        a real Kafka the marker costs two small records per tick with traffic, and none while idle."""
        if not self.unsealed:
            return
        self.unsealed = False
        await self.app.producer.flush()
        now = time.time()
        self.progress["seal"] = now
        self.counts[table_key(GLOBAL, "seal")].apply(operator.add, 1, event=_At(now))

    async def _evaluate(self) -> None:
        self.reload_policy()
        if not self._ready():
            return
        await self._seal()
        now = time.time()
        clock = Clock(watermark=self.watermarks.watermark(now), wall_now=now, last_record_wall=self.last_record_wall)
        policies = sorted(key.split("|", 1)[1] for key in list(self.progress.keys()) if key.startswith("first|"))
        sends: list[Any] = []
        for policy in policies:
            first = self.progress[f"first|{policy}"]
            done = self.progress[f"done|{policy}"] or None
            for start in due_windows(first, done, self.config.window_s, self.config.lateness_s, clock):
                alerts = self.evaluate_window(policy, start)
                for alert in alerts:
                    sends.append(await self.alerts_topic.send(key=alert.key.encode(), value=codec.encode(alert)))
                for state in trips(alerts, self.policy, utcnow()):  # the action guard (docs/guard.md)
                    log.warning("tripping the action guard of %s: %s", state.key, state.reason)
                    sends.append(await self.control_topic.send(key=state.key.encode(), value=codec.encode(state)))
                self.progress[f"done|{policy}"] = start
        if sends:
            await asyncio.gather(*sends)

    def evaluate_window(self, policy: str, start: float) -> list[Alert]:
        """The alerts of one closed window of ``policy``; updates the monitor's gauges."""
        window = Window(policy, start, float(self.config.window_s))
        if policy == GLOBAL:
            dead, records = self._count(GLOBAL, "dead_letters", start), self._count(GLOBAL, "records", start)
            self.metrics.monitor_dead_letter_rate.set(ratio(dead, dead + records))
            named = Window(self.policy.name, start, window.size)
            found = dead_letter_alert(named, dead, records, self.config)
            alerts = [found] if found else []
        else:
            current = self.summary(policy, start)
            if not current.posts and not current.final:
                return []
            reference = self._reference(policy, start)
            alerts = evaluate(window, current, reference, self.config)
            self._observe(policy, current, reference)
        self.metrics.monitor_windows.labels(policy).inc()
        self.metrics.monitor_window_end.labels(policy).set(start + window.size)
        for alert in alerts:
            self.metrics.alerts.labels(alert.kind, alert.policy, alert.category or "").inc()
            log.warning("alert %s: %s (%s, window %s)", alert.kind, alert.message, alert.policy,
                        alert.window_start.isoformat())
        return alerts

    def _observe(self, policy: str, current: Summary, reference: Reference | None) -> None:
        self.metrics.monitor_escalation_rate.labels(policy).set(current.escalation_rate)
        self.metrics.monitor_disagreement_rate.labels(policy).set(current.disagreement_rate)
        for category in self.categories:
            self.metrics.monitor_block_rate.labels(policy, category).set(current.block_rate(category))
            expected = reference.histograms.get(category) if reference else None
            histogram: tuple[int, ...] = current.histograms.get(category, ())
            if expected is not None and any(histogram):
                self.metrics.monitor_psi.labels(policy, category).set(psi(expected, histogram))

    # -- running -------------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Run the faust worker in the foreground until SIGTERM/SIGINT (faust owns the event loop)."""
        import faust

        data_dir = self.settings.monitor.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        worker = faust.Worker(self.app, loglevel=FAUST_LOG_LEVELS[self.settings.log_level], quiet=True,
                              redirect_stdouts=False, workdir=str(data_dir))
        # faust.Worker installs a terminal spinner at warn and above that sets the root logger to DEBUG: drop it.
        worker.spinner = None
        worker.execute_from_commandline()
