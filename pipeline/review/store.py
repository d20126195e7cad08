"""The console's state in its database: what the consumer ingests, the queues, claims, decisions and the outbox.

Every method is one transaction (synchronous SQLAlchemy: the web app calls it from its thread pool, the consumer
through ``asyncio.to_thread``). Exclusive steps are single conditional UPDATEs, so two reviewers racing for an
item cannot both win on SQLite or PostgreSQL: a claim is taken only where nobody holds a live one, and a decision
is recorded only by the reviewer who holds the claim, in the same transaction that releases it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)

from pipeline import codec
from pipeline.records import Label, Post, Verdict
from pipeline.review import rules
from pipeline.review.db import decisions, items, make_engine, outbox, posts, upgrade
from pipeline.review.decision import Choice, Outcome, changes_outcome, records_for
from pipeline.review.rules import QUEUES, Claim, Queue
from pipeline.review.stats import DecisionRow
from pipeline.settings import ReviewSettings

_IN_CHUNK = 500


class ReviewConflict(Exception):
    """The item cannot be claimed or decided by this reviewer now; the message says why."""


@dataclass(frozen=True, slots=True)
class QueueCount:
    queue: Queue
    available: int
    claimed: int
    waiting: int
    done: int


@dataclass(frozen=True, slots=True)
class ItemSummary:
    id: int
    queue: Queue
    post_id: str
    verdict_id: str | None
    claim: Claim
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DecisionEntry:
    uid: str
    reviewer: str
    decided_at: datetime
    decision: str
    label: str
    previous: Outcome
    previous_verdict_id: str
    outcome_changed: bool
    published: bool
    new_verdict_id: str | None


@dataclass(frozen=True, slots=True)
class ItemView:
    id: int
    queue: Queue
    post_id: str
    text: str | None
    verdict: Verdict | None
    """The post's current final verdict (what a decision is compared with)."""
    queued_verdict: Verdict | None
    """The verdict that put the item in its queue (None for audit items)."""
    audit_label: Label | None
    state: str
    claim: Claim
    reviews_needed: int
    reviews_done: int
    decisions: tuple[DecisionEntry, ...]

    @property
    def ready(self) -> bool:
        return self.text is not None and self.verdict is not None


@dataclass(frozen=True, slots=True)
class Decided:
    uid: str
    published: bool
    label: Label | None
    verdict: Verdict | None


@dataclass(frozen=True, slots=True)
class PendingRecord:
    id: int
    role: str
    key: bytes | None
    value: bytes


def _json(record: Verdict | Label) -> str:
    return codec.encode(record).decode()


def _verdict(text: str | None) -> Verdict | None:
    return None if text is None else codec.decode(text.encode(), Verdict)


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(values), _IN_CHUNK):
        yield values[i:i + _IN_CHUNK]


class ReviewStore:
    """The review database with the queue rules of ``settings`` (QA sample, reviews per QA item, claim TTL) and
    the policy's safe class (the label of an allowed post)."""

    def __init__(self, engine: Engine, settings: ReviewSettings, *, safe: str) -> None:
        self.engine = engine
        self.settings = settings
        self.safe = safe

    @classmethod
    def open(cls, settings: ReviewSettings, *, safe: str) -> ReviewStore:
        """Connect to ``settings.database_url`` and migrate it to the newest schema."""
        engine = make_engine(settings.database_url)
        upgrade(engine)
        return cls(engine, settings, safe=safe)

    def close(self) -> None:
        self.engine.dispose()

    # -- ingest ---------------------------------------------------------------------------------------------

    def ingest(self, new_posts: Sequence[Post], verdicts: Sequence[Verdict], labels: Sequence[Label],
               now: datetime) -> int:
        """Record a batch of consumed records; returns how many queue items it created. Idempotent: records seen
        before change nothing."""
        with self.engine.begin() as c:
            self._remember_posts(c, new_posts, verdicts, labels, now)
            return self._queue_items(c, verdicts, labels, now)

    def _remember_posts(self, c: Connection, new_posts: Sequence[Post], verdicts: Sequence[Verdict],
                        labels: Sequence[Label], now: datetime) -> None:
        ids = sorted({p.id for p in new_posts} | {v.post_id for v in verdicts if v.final}
                     | {lb.post_id for lb in labels})
        known: dict[str, tuple[str | None, str | None]] = {}
        for chunk in _chunks(ids):
            for row in c.execute(select(posts.c.post_id, posts.c.text, posts.c.verdict)
                                 .where(posts.c.post_id.in_(chunk))):
                known[row.post_id] = (row.text, row.verdict)
        state: dict[str, list[Any]] = {pid: [*known.get(pid, (None, None)), None] for pid in ids}  # text, json, Verdict
        for text_source in (*((p.id, p.text) for p in new_posts), *((lb.post_id, lb.text) for lb in labels)):
            entry = state[text_source[0]]
            if entry[0] is None:
                entry[0] = text_source[1]
        for verdict in verdicts:
            if not verdict.final:
                continue
            entry = state[verdict.post_id]
            current = entry[2] if entry[2] is not None else _verdict(entry[1])
            if rules.replaces(current, verdict):
                entry[1], entry[2] = _json(verdict), verdict
        fresh = [{"post_id": pid, "text": s[0], "verdict": s[1], "seen_at": now} for pid, s in state.items()
                 if pid not in known]
        if fresh:
            c.execute(insert(posts), fresh)
        for pid, (text, verdict_json) in known.items():
            new_text, new_json = state[pid][0], state[pid][1]
            if (new_text, new_json) != (text, verdict_json):
                c.execute(update(posts).where(posts.c.post_id == pid).values(text=new_text, verdict=new_json))

    def _queue_items(self, c: Connection, verdicts: Sequence[Verdict], labels: Sequence[Label],
                     now: datetime) -> int:
        wanted: dict[str, dict[str, Any]] = {}
        for verdict in verdicts:
            queue = rules.queue_of_verdict(verdict, qa_rate=self.settings.qa_sample_rate, qa_seed=self.settings.qa_seed)
            if queue is None:
                continue
            key = rules.item_key(queue, verdict.verdict_id)
            wanted.setdefault(key, {
                "item_key": key, "queue": queue, "post_id": verdict.post_id, "verdict_id": verdict.verdict_id,
                "verdict": _json(verdict), "label": None,
                "frontier_label": (verdict.category or self.safe) if verdict.route == "frontier" else None,
                "reviews_needed": self.settings.qa_reviewers if queue == "qa" else 1,
            })
        for label in labels:
            queue = rules.queue_of_label(label)
            if queue is None:
                continue
            key = rules.item_key(queue, label.verdict_id or label.post_id)
            judged = label.label if label.label is not None else (label.labels or (None,))[0]
            wanted.setdefault(key, {
                "item_key": key, "queue": queue, "post_id": label.post_id, "verdict_id": label.verdict_id,
                "verdict": None, "label": _json(label),
                "frontier_label": judged if label.source == "frontier" else None, "reviews_needed": 1,
            })
        if not wanted:
            return 0
        keys = list(wanted)  # arrival order: item ids (and so the queues) keep it
        existing: set[str] = set()
        for chunk in _chunks(keys):
            existing.update(c.scalars(select(items.c.item_key).where(items.c.item_key.in_(chunk))))
        new = [{**wanted[k], "reviews_done": 0, "state": "open", "created_at": now} for k in keys if k not in existing]
        if new:
            c.execute(insert(items), new)
        return len(new)

    def prune(self, now: datetime) -> int:
        """Forget posts older than the retention that no queue item refers to; returns how many."""
        cutoff = now - timedelta(hours=self.settings.post_retention_h)
        with self.engine.begin() as c:
            result = c.execute(delete(posts).where(
                posts.c.seen_at < cutoff, ~exists().where(items.c.post_id == posts.c.post_id)))
            return result.rowcount

    # -- queues ---------------------------------------------------------------------------------------------

    @staticmethod
    def _ready() -> ColumnElement[bool]:
        return and_(posts.c.text.is_not(None), or_(items.c.verdict.is_not(None), posts.c.verdict.is_not(None)))

    @staticmethod
    def _live_claim(now: datetime) -> ColumnElement[bool]:
        return and_(items.c.claimed_by.is_not(None), items.c.claim_expires_at > now)

    def queue_counts(self, now: datetime) -> list[QueueCount]:
        ready = self._ready()
        live = self._live_claim(now)
        bucket = case(
            (items.c.state == "done", "done"),
            (not_(ready) | posts.c.post_id.is_(None), "waiting"),
            (live, "claimed"),
            else_="available",
        ).label("bucket")
        query = (select(items.c.queue, bucket, func.count().label("n"))
                 .select_from(items.outerjoin(posts, posts.c.post_id == items.c.post_id))
                 .group_by(items.c.queue, bucket))
        counts: dict[tuple[str, str], int] = {}
        with self.engine.connect() as c:
            for row in c.execute(query):
                counts[(row.queue, row.bucket)] = row.n
        return [QueueCount(q, counts.get((q, "available"), 0), counts.get((q, "claimed"), 0),
                           counts.get((q, "waiting"), 0), counts.get((q, "done"), 0)) for q in QUEUES]

    def open_items(self, reviewer: str, now: datetime, *, queue: Queue | None = None,
                   limit: int = 50) -> list[ItemSummary]:
        """Ready open items in queue order (review, audit, fallback, qa; oldest first), leaving out the items this
        reviewer decided already (the second review of a QA item is someone else's)."""
        order = case({q: i for i, q in enumerate(QUEUES)}, value=items.c.queue)
        query = (select(items.c.id, items.c.queue, items.c.post_id, items.c.verdict_id, items.c.claimed_by,
                        items.c.claim_expires_at, items.c.created_at)
                 .select_from(items.join(posts, posts.c.post_id == items.c.post_id))
                 .where(items.c.state == "open", self._ready(), ~self._decided_by(reviewer))
                 .order_by(order, items.c.id).limit(limit))
        if queue is not None:
            query = query.where(items.c.queue == queue)
        with self.engine.connect() as c:
            return [ItemSummary(r.id, r.queue, r.post_id, r.verdict_id, Claim(r.claimed_by, r.claim_expires_at),
                                r.created_at) for r in c.execute(query)]

    @staticmethod
    def _decided_by(reviewer: str) -> ColumnElement[bool]:
        return exists().where(decisions.c.item_id == items.c.id, decisions.c.reviewer == reviewer)

    def item(self, item_id: int) -> ItemView | None:
        with self.engine.connect() as c:
            row = c.execute(select(items, posts.c.text, posts.c.verdict.label("current"))
                            .select_from(items.outerjoin(posts, posts.c.post_id == items.c.post_id))
                            .where(items.c.id == item_id)).one_or_none()
            if row is None:
                return None
            entries = tuple(
                DecisionEntry(d.uid, d.reviewer, d.decided_at, d.decision, d.label,
                              Outcome(d.previous_decision, d.previous_category), d.previous_verdict_id,
                              d.outcome_changed, d.published, d.new_verdict_id)
                for d in c.execute(select(decisions).where(decisions.c.item_id == item_id).order_by(decisions.c.id)))
        queued = _verdict(row.verdict)
        current = _verdict(row.current) or queued
        return ItemView(
            id=row.id, queue=row.queue, post_id=row.post_id, text=row.text, verdict=current, queued_verdict=queued,
            audit_label=None if row.label is None else codec.decode(row.label.encode(), Label), state=row.state,
            claim=Claim(row.claimed_by, row.claim_expires_at), reviews_needed=row.reviews_needed,
            reviews_done=row.reviews_done, decisions=entries,
        )

    # -- claims ---------------------------------------------------------------------------------------------

    def claim(self, item_id: int, reviewer: str, now: datetime) -> Claim:
        """Claim an item (or renew one's own claim) and release the reviewer's other claims: one item at a time.
        Raises :class:`ReviewConflict` naming the holder when someone else holds a live claim."""
        expires = rules.claim_expiry(now, self.settings.claim_ttl_s)
        with self.engine.begin() as c:
            taken = c.execute(
                update(items)
                .where(items.c.id == item_id, items.c.state == "open",
                       or_(items.c.claimed_by.is_(None), items.c.claimed_by == reviewer,
                           items.c.claim_expires_at <= now),
                       ~self._decided_by(reviewer))
                .values(claimed_by=reviewer, claim_expires_at=expires)
            ).rowcount
            if taken != 1:
                raise ReviewConflict(self._why_not(c, item_id, reviewer, now))
            c.execute(update(items).where(items.c.claimed_by == reviewer, items.c.id != item_id,
                                          items.c.state == "open")
                      .values(claimed_by=None, claim_expires_at=None))
        return Claim(reviewer, expires)

    def claim_next(self, reviewer: str, now: datetime, *, queue: Queue | None = None) -> int | None:
        """Claim the first available item (of ``queue``, or of any queue in order); None when there is none."""
        for item in self.open_items(reviewer, now, queue=queue, limit=25):
            if item.claim.may_take(reviewer, now):
                try:
                    self.claim(item.id, reviewer, now)
                except ReviewConflict:
                    continue  # taken meanwhile
                return item.id
        return None

    def release(self, item_id: int, reviewer: str) -> None:
        with self.engine.begin() as c:
            c.execute(update(items).where(items.c.id == item_id, items.c.claimed_by == reviewer)
                      .values(claimed_by=None, claim_expires_at=None))

    @staticmethod
    def _why_not(c: Connection, item_id: int, reviewer: str, now: datetime) -> str:
        row = c.execute(select(items.c.state, items.c.claimed_by, items.c.claim_expires_at)
                        .where(items.c.id == item_id)).one_or_none()
        if row is None:
            return f"item {item_id} does not exist"
        if c.execute(select(decisions.c.id).where(decisions.c.item_id == item_id,
                                                  decisions.c.reviewer == reviewer)).first():
            return f"you have decided item {item_id} already; its next review is someone else's"
        if row.state != "open":
            return f"item {item_id} is decided"
        holder = Claim(row.claimed_by, row.claim_expires_at).holder(now)
        if holder is not None and holder != reviewer:
            return f"item {item_id} is claimed by {holder} until {row.claim_expires_at:%H:%M:%S} UTC"
        return f"you do not hold the claim on item {item_id}: claim it first"

    # -- decisions ------------------------------------------------------------------------------------------

    def decide(self, item_id: int, reviewer: str, choice: Choice, now: datetime) -> Decided:
        """Record a reviewer's final decision and queue what it publishes, in one transaction.

        Only the holder of the claim may decide (an expired claim still counts while nobody took the item over).
        The first decision on an item publishes a Label, and a superseding Verdict when the outcome changes; a
        QA item's second, blind review is recorded for the statistics only.
        """
        with self.engine.begin() as c:
            won = c.execute(
                update(items)
                .where(items.c.id == item_id, items.c.state == "open", items.c.claimed_by == reviewer,
                       ~self._decided_by(reviewer))
                .values(reviews_done=items.c.reviews_done + 1, claimed_by=None, claim_expires_at=None,
                        state=case((items.c.reviews_done + 1 >= items.c.reviews_needed, "done"), else_="open"))
            ).rowcount
            if won != 1:
                raise ReviewConflict(self._why_not(c, item_id, reviewer, now))
            row = c.execute(select(items.c.post_id, items.c.verdict, items.c.reviews_done, posts.c.text,
                                   posts.c.verdict.label("current"))
                            .select_from(items.outerjoin(posts, posts.c.post_id == items.c.post_id))
                            .where(items.c.id == item_id)).one()
            current = _verdict(row.current) or _verdict(row.verdict)
            if row.text is None or current is None:
                raise ReviewConflict(f"item {item_id} is not ready: its post or verdict has not arrived yet")
            uid = uuid.uuid4().hex
            publishes = row.reviews_done == 1
            out = records_for(current=current, choice=choice, text=row.text, decision_id=uid, decided_at=now)
            verdict = out.verdict if publishes else None
            inserted = c.execute(insert(decisions).values(
                uid=uid, item_id=item_id, reviewer=reviewer, decided_at=now, decision=choice.decision,
                label=choice.label, previous_verdict_id=current.verdict_id, previous_decision=current.decision,
                previous_category=Outcome.of(current).category, outcome_changed=verdict is not None,
                published=publishes, new_verdict_id=verdict.verdict_id if verdict else None,
            )).inserted_primary_key
            assert inserted is not None
            decision_id = inserted[0]
            if publishes:
                key = current.post_id.encode()
                pending = [("labels", out.label), *((("verdicts", verdict),) if verdict else ())]
                c.execute(insert(outbox), [{"decision_id": decision_id, "role": role, "key": key,
                                            "value": codec.encode(record), "created_at": now}
                                           for role, record in pending])
            if verdict is not None:
                c.execute(update(posts).where(posts.c.post_id == current.post_id).values(verdict=_json(verdict)))
        return Decided(uid, publishes, out.label if publishes else None, verdict)

    def would_change(self, view: ItemView, choice: Choice) -> bool:
        return view.verdict is not None and changes_outcome(view.verdict, choice)

    # -- outbox ---------------------------------------------------------------------------------------------

    def pending(self, limit: int = 200) -> list[PendingRecord]:
        with self.engine.connect() as c:
            return [PendingRecord(r.id, r.role, r.key, r.value) for r in c.execute(
                select(outbox.c.id, outbox.c.role, outbox.c.key, outbox.c.value)
                .where(outbox.c.sent_at.is_(None)).order_by(outbox.c.id).limit(limit))]

    def mark_sent(self, ids: Sequence[int], now: datetime) -> None:
        with self.engine.begin() as c:
            c.execute(update(outbox).where(outbox.c.id.in_(list(ids))).values(sent_at=now))

    # -- statistics -----------------------------------------------------------------------------------------

    def decision_rows(self) -> list[DecisionRow]:
        with self.engine.connect() as c:
            return [DecisionRow(r.item_id, r.reviewer, r.decided_at, r.decision, r.label, r.frontier_label)
                    for r in c.execute(select(decisions.c.item_id, decisions.c.reviewer, decisions.c.decided_at,
                                              decisions.c.decision, decisions.c.label, items.c.frontier_label)
                                       .select_from(decisions.join(items, items.c.id == decisions.c.item_id)))]
