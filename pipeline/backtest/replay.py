"""Posts through the stream's own stages, chunk by chunk: what each one ended as.

    chunk of posts ─► ClassifyStage (intake, score cache, classify, decide, route, audit draw) ─► outputs
    escalations and audit requests ─► AdjudicationStage (the frontier, or the history's labels) ─► verdicts, labels

Nothing here decides: the stages do, exactly as the classify and adjudicate workers do, so a post gets the
decision it would have had in the stream. Classification and adjudication are timed apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pipeline import codec
from pipeline.adjudication.stage import AdjudicationStage
from pipeline.backtest.outcome import HistoryPost, PostOutcome
from pipeline.cascade.stage import ClassifyStage
from pipeline.intake import RawRecord
from pipeline.records import AdjudicationRequest, DeadLetter, Label, Verdict

TOPIC = "backtest"


@dataclass(slots=True)
class Timings:
    classify_s: float = 0.0
    adjudicate_s: float = 0.0

    def add(self, other: Timings) -> None:
        self.classify_s += other.classify_s
        self.adjudicate_s += other.adjudicate_s


@dataclass(slots=True)
class _Post:
    post: HistoryPost
    slm_top: str = ""
    stage: str = "dead"
    stage_category: str | None = None
    verdict: Verdict | None = None
    request: AdjudicationRequest | None = None
    audit: AdjudicationRequest | None = None
    labels: list[Label] = field(default_factory=list)
    dead: bool = False


async def replay(posts: Sequence[HistoryPost], classify: ClassifyStage, adjudicate: AdjudicationStage | None, *,
                 chunk: int = 512, on_chunk: Callable[[int], None] | None = None,
                 timings: Timings | None = None) -> list[PostOutcome]:
    """The outcome of every post, in order. ``on_chunk(n)`` is called after each chunk of ``n`` posts."""
    timings = timings if timings is not None else Timings()
    outcomes: list[PostOutcome] = []
    for start in range(0, len(posts), chunk):
        part = posts[start:start + chunk]
        outcomes.extend(await _chunk(part, classify, adjudicate, timings))
        if on_chunk is not None:
            on_chunk(len(part))
    return outcomes


async def _chunk(part: Sequence[HistoryPost], classify: ClassifyStage, adjudicate: AdjudicationStage | None,
                 timings: Timings) -> list[PostOutcome]:
    state = {p.id: _Post(p) for p in part}
    records = [RawRecord(p.value, key=p.id.encode(), topic=TOPIC, offset=i) for i, p in enumerate(part)]
    started = time.perf_counter()
    outputs = await classify.process(records, asyncio.sleep)
    classify.published(outputs)
    timings.classify_s += time.perf_counter() - started
    for out in outputs:
        record = out.record
        if isinstance(record, Verdict):
            s = state[record.post_id]
            s.verdict, s.stage, s.stage_category, s.slm_top = record, record.decision, record.category, \
                _top(record.scores)
        elif isinstance(record, AdjudicationRequest):
            s = state[record.post.id]
            s.slm_top = _top(record.scores)
            if record.audit:
                s.audit = record
            else:
                s.request, s.stage, s.stage_category = record, "escalate", record.candidate_category
        elif isinstance(record, DeadLetter) and out.source is not None and out.source.key is not None:
            state[out.source.key.decode()].dead = True
    sent = [s.request or s.audit for s in state.values() if s.request is not None or s.audit is not None]
    if adjudicate is not None and sent:
        started = time.perf_counter()
        raws = [RawRecord(codec.encode(r), key=r.post.id.encode(), topic=TOPIC) for r in sent if r is not None]
        results = await adjudicate.process(raws, asyncio.sleep)
        adjudicate.published(results)
        timings.adjudicate_s += time.perf_counter() - started
        for out in results:
            record = out.record
            if isinstance(record, Verdict):
                state[record.post_id].verdict = record
            elif isinstance(record, Label):
                state[record.post_id].labels.append(record)
            elif isinstance(record, DeadLetter) and out.source is not None and out.source.key is not None:
                state[out.source.key.decode()].dead = True
    return [_outcome(s, adjudicated=adjudicate is not None) for s in state.values()]


def _outcome(s: _Post, *, adjudicated: bool) -> PostOutcome:
    p = s.post
    calls = int(s.request is not None and adjudicated) + int(s.audit is not None and adjudicated)
    audit_label = next((x for x in s.labels if x.audit), None)
    frontier_label = next((x.label for x in s.labels), None)
    audit_usd = (audit_label.cost_usd or 0.0) if audit_label is not None else 0.0
    if s.dead and s.verdict is None:
        return PostOutcome(id=p.id, label=p.label, slm_top=s.slm_top, stage="dead" if s.stage == "dead" else s.stage,
                           stage_category=s.stage_category, decision="dead", category=None, route="dead",
                           frontier_calls=calls)
    if s.verdict is None:  # an escalation with no adjudication stage: left undecided
        return PostOutcome(id=p.id, label=p.label, slm_top=s.slm_top, stage=s.stage, stage_category=s.stage_category,
                           decision="escalate", category=s.stage_category, route="unadjudicated")
    v = s.verdict
    return PostOutcome(id=p.id, label=p.label, slm_top=s.slm_top, stage=s.stage, stage_category=s.stage_category,
                       decision=v.decision, category=v.category, route=v.route, cost_usd=v.cost_usd,
                       audit_usd=audit_usd, frontier_label=frontier_label, audited=s.audit is not None,
                       frontier_calls=calls)


def _top(scores: dict[str, float]) -> str:
    return max(scores, key=lambda label: scores[label]) if scores else ""
