"""The classify stage: a batch of raw ``posts`` records in, the records to publish out.

    intake       each record → Post, or DeadLetter with the original bytes and the reason
    cache        a repeat of a text seen within the window (same model and policy version) reuses its
                 scores; repeats inside one batch are sent to the model once
    classify     one backend call for the rest; while the backend is unavailable, back off (jittered,
                 growing) through ``wait`` and try again, for as long as it takes: good posts are never
                 dropped or dead-lettered because the model is down
    decide       ``decide(scores, policy)`` per post, under one policy snapshot for the whole batch
    guard        a block in a category whose action guard is tripped (``guards``, from the control topic)
                 becomes an escalation or a review verdict per the policy's ``guard.divert``, marked with
                 ``guard`` (:func:`pipeline.policy.guard_outcome`); never dropped, never delayed
    route        a final outcome → Verdict (route slm or cache); escalate → AdjudicationRequest
    audit        with ``audit`` on, a final verdict the policy's audit draw picks (:func:`pipeline.policy.audited`)
                 also goes to ``adjudication`` as an audit request; the verdict is published all the same
    shadow       with a candidate policy, ``decide(scores, candidate)`` too → ShadowDecision on ``shadow``:
                 recorded and counted, never a verdict, so ops see a threshold change before it goes live

The stage owns no Kafka client; :class:`pipeline.kafka.stream.StreamLoop` runs it. Any other backend
failure (a model that does not match, a malformed answer) is fatal: the batch is not committed, the
worker exits, nothing is lost.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as TallyCounter
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import TYPE_CHECKING

from pipeline import codec
from pipeline.backends.base import Classifier
from pipeline.cascade.cache import CachedScores, CacheKey, ScoreCache, cache_keys
from pipeline.cascade.route import (
    ModelRef,
    SmallModelRoute,
    SmallModelVerdicts,
    ingest_time,
    make_adjudication,
    make_audit,
    make_shadow,
    origin_ms,
)
from pipeline.errors import BackendUnavailable
from pipeline.intake import RawRecord, read_posts
from pipeline.metrics import Metrics, observe_all
from pipeline.policy import Policy, audited, decide, guard_outcome
from pipeline.records import (
    DEAD_LETTER_MAX_BYTES,
    AdjudicationRequest,
    DeadLetter,
    Post,
    ShadowDecision,
    Verdict,
    utcnow,
)
from pipeline.retry import Backoff
from pipeline.stage import BatchProcessor, Outgoing, Wait, dead_letter

if TYPE_CHECKING:
    from prometheus_client import Counter

log = logging.getLogger(__name__)

INTAKE_STAGE = "classify.intake"


class ClassifyStage(BatchProcessor):
    """``policy`` (and ``shadow``, the candidate policy, when given) is called once per batch (usually a
    ``PolicyStore``'s ``current``). ``max_text_bytes``, ``max_post_bytes`` and ``dead_letter_max_bytes`` bound
    what intake lets through and what its dead letters keep (:func:`pipeline.intake.read_posts`). ``audit`` turns
    on the policy's audit sample (the stream worker; the batch command leaves it off)."""

    def __init__(
        self,
        classifier: Classifier,
        policy: Callable[[], Policy],
        *,
        cache: ScoreCache,
        metrics: Metrics,
        max_text_bytes: int,
        backoff: Backoff,
        shadow: Callable[[], Policy] | None = None,
        clock: Callable[[], datetime] = utcnow,
        max_post_bytes: int | None = None,
        dead_letter_max_bytes: int = DEAD_LETTER_MAX_BYTES,
        audit: bool = False,
        guards: Callable[[str, datetime], AbstractSet[str]] | None = None,
    ) -> None:
        self.audit = audit
        self.guards = guards
        self.classifier = classifier
        self.policy = policy
        self.shadow = shadow
        self.cache = cache
        self.metrics = metrics
        self.max_text_bytes = max_text_bytes
        self.max_post_bytes = max_post_bytes
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.backoff = backoff
        self.clock = clock
        self.model = ModelRef(classifier.model_name, classifier.model_version)

    async def process(self, records: Sequence[RawRecord], wait: Wait) -> list[Outgoing]:
        read_at = self.clock()
        policy = self.policy()
        shadow = self.shadow() if self.shadow is not None else None
        outputs: list[Outgoing] = []
        posts: list[tuple[Post, RawRecord]] = []
        items = read_posts(records, stage=INTAKE_STAGE, max_text_bytes=self.max_text_bytes,
                           max_post_bytes=self.max_post_bytes, dead_letter_max_bytes=self.dead_letter_max_bytes)
        for raw, item in zip(records, items, strict=True):
            if isinstance(item, Post):
                posts.append((item, raw))
            else:
                outputs.append(dead_letter(item, raw))
        if not posts:
            return outputs

        scored = await self._scores(posts, policy, wait)
        now = self.clock()
        tripped = self.guards(policy.name, now) if self.guards is not None else frozenset()
        model, encode = self.model, codec.encode
        audit = self.audit and policy.audit.enabled  # no draw per post while every rate is 0
        verdict_of, read_at_ms = SmallModelVerdicts(policy, model, now), read_at.timestamp() * 1000.0
        guard: str | None = None
        for (post, raw), (scores, route) in zip(posts, scored, strict=True):
            outcome = decide(scores, policy)
            if tripped:
                outcome, guard = guard_outcome(outcome, scores, policy, tripped)
            key = post.id.encode()
            if outcome.final:
                verdict = verdict_of(post, scores, outcome, route, origin_ms(post, raw.timestamp_ms, read_at_ms), guard)
                outputs.append(Outgoing("verdicts", key, encode(verdict), verdict, raw))
                if audit and audited(policy.audit, post.id, route=route, decision=verdict.decision,
                                     category=verdict.category):
                    check = make_audit(post, verdict, ingested_at=ingest_time(raw.timestamp_ms, read_at), now=now)
                    outputs.append(Outgoing("adjudication", key, codec.encode(check), check, raw))
            else:
                request = make_adjudication(post, scores, outcome, policy=policy, model=model,
                                            ingested_at=ingest_time(raw.timestamp_ms, read_at), now=now, guard=guard)
                outputs.append(Outgoing("adjudication", key, encode(request), request, raw))
            if shadow is not None:
                record = make_shadow(post, scores, outcome, decide(scores, shadow), live_policy=policy,
                                     shadow_policy=shadow, model=model, now=now)
                outputs.append(Outgoing("shadow", key, encode(record), record, raw))
        return outputs

    def published(self, outputs: Sequence[Outgoing]) -> None:
        # Counted per label set first, then one labels() lookup and one inc(n) each: the lookups cost more than the
        # counting. Latencies are observed together per route (observe_all: every value in its bucket).
        m = self.metrics
        now = time.time()
        counts: TallyCounter[tuple[Counter, tuple[str, ...]]] = TallyCounter()
        latencies: dict[str, list[float]] = {}
        for out in outputs:
            record = out.record
            if isinstance(record, Verdict):
                counts[m.decisions, (record.decision, record.category or "none", record.route)] += 1
                latencies.setdefault(record.route, []).append(
                    max(0.0, now - record.decided_at.timestamp() + record.latency_ms / 1000.0))
                if record.guard is not None:
                    counts[m.guard_verdicts, (record.guard, record.decision, record.route)] += 1
                    counts[m.guard_diverted, (record.policy, record.guard, "review")] += 1
            elif isinstance(record, AdjudicationRequest):
                if record.guard is not None:
                    counts[m.guard_diverted, (record.policy, record.guard, "adjudication")] += 1
                if record.audited is not None:
                    counts[m.audit_requests, (record.audited.route, record.audited.category or "none")] += 1
                else:
                    counts[m.escalations, (record.candidate_category or "none",)] += 1
            elif isinstance(record, DeadLetter):
                counts[m.dead_letters, (record.stage, record.reason)] += 1
            elif isinstance(record, ShadowDecision):
                counts[m.shadow_decisions, (record.shadow_decision, record.shadow_category or "none")] += 1
                if not record.agrees:
                    counts[m.shadow_disagreements, (record.live_decision, record.shadow_decision)] += 1
        for (metric, labels), n in counts.items():
            metric.labels(*labels).inc(n)
        for route, values in latencies.items():
            observe_all(m.end_to_end_latency.labels(route), values)

    async def _scores(
        self, posts: Sequence[tuple[Post, RawRecord]], policy: Policy, wait: Wait
    ) -> list[tuple[CachedScores, SmallModelRoute]]:
        """Scores and route per post: cache hits, first occurrences sent to the model, in-batch repeats."""
        keys = cache_keys((post.text for post, _ in posts), self.model.version, policy.version)
        found: dict[CacheKey, CachedScores] = {}
        misses: dict[CacheKey, str] = {}  # first text of each missing key, in order
        for key, (post, _) in zip(keys, posts, strict=True):
            if key in found or key in misses:
                continue
            cached = self.cache.get(key)
            if cached is not None:
                found[key] = cached
            else:
                misses[key] = post.text
        if misses:
            fresh = await self._classify(list(misses.values()), wait)
            for key, scores in zip(misses, fresh, strict=True):
                self.cache.put(key, scores)
                found[key] = scores
        self.metrics.cache_entries.set(len(self.cache))

        result: list[tuple[CachedScores, SmallModelRoute]] = []
        sent: set[CacheKey] = set()
        for key in keys:
            if key in misses and key not in sent:
                sent.add(key)
                result.append((found[key], "slm"))
            else:
                result.append((found[key], "cache"))
        hits = len(keys) - len(misses)
        self.metrics.cache_lookups.labels("hit").inc(hits)
        self.metrics.cache_lookups.labels("miss").inc(len(misses))
        return result

    async def _classify(self, texts: list[str], wait: Wait) -> list[Mapping[str, float]]:
        failures = 0
        while True:
            started = time.perf_counter()
            try:
                scores = await self.classifier.classify(texts)
            except BackendUnavailable as exc:
                self.metrics.model_errors.labels("unavailable").inc()
                self.metrics.backend_up.set(0)
                delay = self.backoff.delay(failures)
                failures += 1
                log.warning("model backend unavailable (%s); holding %d posts, consumption paused, retry %d in "
                            "%.1f s", exc, len(texts), failures, delay)
                await wait(delay)
                continue
            self.metrics.model_latency.observe(time.perf_counter() - started)
            self.metrics.batch_size.observe(len(texts))
            self.metrics.backend_up.set(1)
            if failures:
                log.info("model backend is back after %d failed attempts; resuming", failures)
            return list(scores)
