"""The adjudication stage: a batch of ``adjudication`` records in, final verdicts (and labels) out.

For each request, under one policy snapshot per batch, with at most ``concurrency`` calls in flight:

    budget     the policy's escalation budget (requests and dollars per sliding hour) has room?
    breaker    the circuit breaker lets a call through?          (no: fallback, or hold)
    rate       the token bucket (calls per second) has a token?  (wait for it)
    call       one frontier call (:mod:`pipeline.adjudication.prompt` builds it)
    check      the answer fits the policy (:mod:`pipeline.adjudication.answer`)

    accepted         → Verdict(route=frontier, rationale, real cost from usage) + Label(source=frontier)
    transient error  → retry after ``retry-after`` or jittered backoff, at most ``max_attempts`` calls
    bad answer       → (refusal, out of schema, no tool call) retry, at most ``max_attempts`` calls
    attempts spent, breaker open or budget spent → the policy's ``fallback``:
        small_model  → Verdict(route=fallback, the small model's best guess, final, flagged with the reason)
        hold         → keep the request (consumption pauses; try again later); a post whose answers stay
                       unusable is dead-lettered instead, since holding cannot fix it
    rejected request (4xx) → fallback as above; an authentication or unknown-model error stops the worker

An audit request (``audit``: a final small-model verdict drawn into the audit sample) takes the same calls
under the policy's *audit* budget instead of the escalation budget, and ends differently:

    accepted                             → Label(source=frontier, audit, agrees with the audited verdict) only
    audit budget spent, breaker open,
    attempts spent, answer unusable, 4xx → skipped and counted (modcascade_audit_skipped_total): never a
                                           verdict, never a fallback, never a hold

The cost of a verdict is the sum of every call made for it, priced from the response's usage fields.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from pipeline import codec
from pipeline.adjudication.answer import AnswerProblem, Judgement, parse_answer
from pipeline.adjudication.backends import NOT_CONFIGURED, Adjudicator, FrontierReply
from pipeline.adjudication.limits import AdjudicationLimits, CircuitBreaker, PartitionedBudget, TokenBucket
from pipeline.adjudication.outcomes import audit_label, fallback_verdict, frontier_cost, frontier_outcome
from pipeline.adjudication.prompt import build_request
from pipeline.errors import DecodeError, FrontierRejected, FrontierTransient
from pipeline.intake import RawRecord
from pipeline.metrics import LivePrecision, Metrics
from pipeline.policy import Policy
from pipeline.records import (
    AdjudicationRequest,
    BudgetLedger,
    BudgetName,
    DeadLetter,
    Label,
    Verdict,
    ledger_key,
    utcnow,
)
from pipeline.stage import Assignment, BatchProcessor, Outgoing, Wait, dead_letter

log = logging.getLogger(__name__)

INTAKE_STAGE = "adjudicate.intake"
ANSWER_STAGE = "adjudicate.answer"
_FATAL_REJECTIONS = frozenset({"auth", "not_found", NOT_CONFIGURED})  # no post can succeed: stop loudly


class _Held(Exception):
    """The request could not be settled now and the policy says hold: wait, then start over."""

    def __init__(self, seconds: float, reason: str) -> None:
        self.seconds, self.reason = seconds, reason


class AdjudicationStage(BatchProcessor):
    def __init__(
        self,
        adjudicator: Adjudicator,
        policy: Callable[[], Policy],
        *,
        limits: AdjudicationLimits,
        metrics: Metrics,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.adjudicator = adjudicator
        self.policy = policy
        self.limits = limits
        self.metrics = metrics
        self.clock = clock
        self.bucket = TokenBucket(limits.rate_per_s, limits.burst)
        self.breaker = CircuitBreaker(limits.breaker_failures, limits.breaker_reset_s)
        self.breaker.on_change = self._breaker_changed
        self._budget: PartitionedBudget | None = None
        self._budget_key: tuple[int | None, float | None] | None = None
        self._audit_budget: PartitionedBudget | None = None
        self._live = LivePrecision(metrics.live_precision)  # this process's running audit counts
        self._assignment: Assignment | None = None  # set by a consumer group (several replicas share the caps)
        self._audit_budget_key: tuple[int | None, float | None] | None = None
        self._slots = asyncio.Semaphore(limits.concurrency)
        self._wait_lock = asyncio.Lock()  # one pause at a time: the consumer polls from one place

    async def process(self, records: Sequence[RawRecord], wait: Wait) -> list[Outgoing]:
        policy = self.policy()
        budget = self._budget_for(policy)
        audit_budget = self._audit_budget_for(policy)
        outputs: list[Outgoing] = []
        requests: list[tuple[AdjudicationRequest, RawRecord]] = []
        for raw in records:
            try:
                requests.append((codec.decode(raw.value or b"", AdjudicationRequest), raw))
            except DecodeError as exc:
                letter = DeadLetter.of(raw.value or b"", stage=INTAKE_STAGE, error=exc, reason=exc.reason, key=raw.key,
                                       topic=raw.topic, partition=raw.partition, offset=raw.offset)
                outputs.append(dead_letter(letter, raw))
        results = await asyncio.gather(*(self._settle(request, raw, policy, audit_budget if request.audit else budget,
                                                      wait) for request, raw in requests))
        for result in results:
            outputs.extend(result)
        outputs.extend(self._ledgers())
        return outputs

    def published(self, outputs: Sequence[Outgoing]) -> None:
        m = self.metrics
        for out in outputs:
            record = out.record
            if isinstance(record, Verdict):
                m.decisions.labels(record.decision, record.category or "none", record.route).inc()
                m.end_to_end_latency.labels(record.route).observe(record.latency_ms / 1000.0)
                if record.guard is not None:
                    m.guard_verdicts.labels(record.guard, record.decision, record.route).inc()
            elif isinstance(record, DeadLetter):
                m.dead_letters.labels(record.stage, record.reason).inc()
            elif isinstance(record, Label) and record.audited is not None:
                category = record.audited.category or "none"
                m.audit_outcomes.labels(record.audited.route, category,
                                        "agree" if record.agrees else "disagree").inc()
                self._live.record(category, bool(record.agrees))

    # -- one request ---------------------------------------------------------------------------------

    async def _settle(self, request: AdjudicationRequest, raw: RawRecord, policy: Policy, budget: PartitionedBudget,
                      wait: Wait) -> list[Outgoing]:
        while True:
            try:
                async with self._slots:
                    return await self._attempts(request, raw, policy, budget)
            except _Held as held:
                self.metrics.frontier_holds.labels(held.reason).inc()
                async with self._wait_lock:
                    await wait(min(self.limits.max_hold_s, max(0.05, held.seconds)))

    async def _attempts(self, request: AdjudicationRequest, raw: RawRecord, policy: Policy,
                        budget: PartitionedBudget) -> list[Outgoing]:
        spent = 0.0
        problem = ""
        est = policy.prices.est_frontier_usd_per_post
        for attempt in range(self.limits.max_attempts):
            # The call's room is reserved before it is sent, so the calls in flight at once never add up past the
            # caps (PartitionedBudget.reserve); it is booked at its real cost when it ends, or released.
            reservation = budget.reserve(est)
            if reservation is None:
                return self._unsettled(request, raw, policy, "over_budget", spent, budget.seconds_until_room(est))
            if not self.breaker.allow():
                budget.release(reservation)
                return self._unsettled(request, raw, policy, "frontier_unavailable", spent,
                                       self.breaker.seconds_until_trial())
            try:
                await self.bucket.take()
                reply = await self.adjudicator.adjudicate(build_request(request, policy))
            except FrontierTransient as exc:
                budget.settle(reservation, 0.0)
                self.breaker.record_failure()
                self.metrics.frontier_calls.labels(exc.kind).inc()
                problem = exc.kind
                if attempt + 1 < self.limits.max_attempts:
                    await asyncio.sleep(exc.retry_after if exc.retry_after is not None
                                        else self.limits.backoff.delay(attempt))
                continue
            except FrontierRejected as exc:
                budget.release(reservation)
                self.metrics.frontier_calls.labels("rejected").inc()
                if exc.kind in _FATAL_REJECTIONS:
                    raise
                return self._fallback_or_dead(request, raw, policy, "frontier_rejected", spent, exc)
            except BaseException:
                budget.release(reservation)  # cancelled (a rebalance, a stop) or a fatal error: nothing to book
                raise
            self.breaker.record_success()
            cost = self._book(reply, policy)
            budget.settle(reservation, cost)
            spent += cost
            judgement = parse_answer(reply.content, reply.stop_reason, policy)
            if isinstance(judgement, AnswerProblem):
                self.metrics.frontier_calls.labels(judgement.kind).inc()
                log.warning("unusable frontier answer for post %s (%s: %s), attempt %d of %d", request.post.id,
                            judgement.kind, judgement.detail, attempt + 1, self.limits.max_attempts)
                problem = judgement.kind
                continue
            self.metrics.frontier_calls.labels("ok").inc()
            return self._accepted(request, raw, policy, reply, judgement, spent)
        if problem in ("refusal", "no_tool_call", "out_of_schema", "truncated"):
            return self._fallback_or_dead(request, raw, policy, f"frontier_{problem}", spent,
                                          ValueError(f"{self.limits.max_attempts} unusable answers ({problem})"))
        return self._unsettled(request, raw, policy, "frontier_unavailable", spent, self.limits.backoff.max_s)

    # -- outcomes ------------------------------------------------------------------------------------

    def _accepted(self, request: AdjudicationRequest, raw: RawRecord, policy: Policy, reply: FrontierReply,
                  judgement: Judgement, cost: float) -> list[Outgoing]:
        if request.audit:
            self.metrics.audit_cost_usd.inc(cost)
            outcome = audit_label(request, policy, judgement, cost=cost, now=self.clock())
            return [Outgoing("labels", request.post.id.encode(), codec.encode(outcome), outcome, raw)]
        verdict, label = frontier_outcome(request, policy, reply, judgement, cost=cost, now=self.clock())
        key = request.post.id.encode()
        return [Outgoing("verdicts", key, codec.encode(verdict), verdict, raw),
                Outgoing("labels", key, codec.encode(label), label, raw)]

    def _unsettled(self, request: AdjudicationRequest, raw: RawRecord, policy: Policy, reason: str, spent: float,
                   retry_in: float) -> list[Outgoing]:
        """Breaker open, budget spent or attempts used up: fall back, or hold (raise _Held); an audit is skipped."""
        if request.audit:
            return self._skip_audit(reason, spent)
        if policy.fallback == "hold":
            raise _Held(retry_in, reason)
        return self._fallback(request, raw, policy, reason, spent)

    def _fallback_or_dead(self, request: AdjudicationRequest, raw: RawRecord, policy: Policy, reason: str,
                          spent: float, error: BaseException) -> list[Outgoing]:
        """The frontier answered but unusably: fall back, or (hold) dead-letter, as waiting cannot help; an audit is
        skipped."""
        if request.audit:
            return self._skip_audit(reason, spent)
        if policy.fallback == "small_model":
            return self._fallback(request, raw, policy, reason, spent)
        letter = DeadLetter.of(raw.value or b"", stage=ANSWER_STAGE, error=error, reason=reason, key=raw.key,
                               topic=raw.topic, partition=raw.partition, offset=raw.offset,
                               attempts=self.limits.max_attempts)
        return [dead_letter(letter, raw)]

    def _fallback(self, request: AdjudicationRequest, raw: RawRecord, policy: Policy, reason: str,
                  spent: float) -> list[Outgoing]:
        self.metrics.fallbacks.labels(reason).inc()
        verdict = fallback_verdict(request, policy, reason=reason, spent=spent, now=self.clock())
        return [Outgoing("verdicts", request.post.id.encode(), codec.encode(verdict), verdict, raw)]

    def _skip_audit(self, reason: str, spent: float) -> list[Outgoing]:
        """An audit without an answer: counted, nothing published (the audited verdict stands as it is)."""
        self.metrics.audit_skipped.labels(reason).inc()
        self.metrics.audit_cost_usd.inc(spent)
        return []

    # -- bookkeeping ---------------------------------------------------------------------------------

    def _book(self, reply: FrontierReply, policy: Policy) -> float:
        book_usage(self.metrics, reply)
        cost = frontier_cost(reply, policy)
        self.metrics.frontier_cost_usd.inc(cost)
        return cost

    def _budget_for(self, policy: Policy) -> PartitionedBudget:
        key = (policy.escalation_budget.max_requests_per_hour, policy.escalation_budget.max_usd_per_hour)
        if self._budget is None or key != self._budget_key:
            # A policy edit that changes the caps starts from the spend booked so far, under the new caps.
            self._budget, self._budget_key = self._rebudget(self._budget, key, "escalation"), key
        return self._budget

    def _audit_budget_for(self, policy: Policy) -> PartitionedBudget:
        """The audit budget: its own window, apart from the escalation budget (audits never spend that)."""
        caps = policy.audit.budget
        key = (caps.max_requests_per_hour, caps.max_usd_per_hour)
        if self._audit_budget is None or key != self._audit_budget_key:
            self._audit_budget, self._audit_budget_key = self._rebudget(self._audit_budget, key, "audit"), key
        return self._audit_budget

    # -- the budgets across replicas (docs/adjudication.md, "Several replicas") ----------------------

    state_role = "budget"

    def assigned(self, assignment: Assignment) -> None:
        """A rebalance: both budgets are split anew by the partitions held, starting from the ledgers the
        partitions' previous owners published on ``budget``."""
        self._assignment = assignment
        for name, budget in self._budgets():
            if budget is not None:
                budget.assign(assignment.partitions, assignment.total, self._restored(name, assignment))
        log.info("budget share %.2f (%d of %d partitions of %s)", assignment.share, len(assignment.partitions),
                 assignment.total, assignment.topic)

    def _budgets(self) -> tuple[tuple[BudgetName, PartitionedBudget | None], ...]:
        return ("escalation", self._budget), ("audit", self._audit_budget)

    def _rebudget(self, old: PartitionedBudget | None, caps: tuple[int | None, float | None],
                  name: BudgetName) -> PartitionedBudget:
        budget = PartitionedBudget(*caps)
        a = self._assignment
        if a is not None:
            restored = self._restored(name, a)
            if old is not None:  # what this replica booked is at least as recent as what it published
                restored |= {p: old.ledger(p) for p in old.held}
            budget.assign(a.partitions, a.total, restored)
        elif old is not None:
            budget.assign(old.held, 1, {p: old.ledger(p) for p in old.held})
        return budget

    @staticmethod
    def _restored(name: BudgetName, assignment: Assignment) -> dict[int, list[tuple[float, int, float]]]:
        restored: dict[int, list[tuple[float, int, float]]] = {}
        for p in assignment.partitions:
            value = assignment.state.get(ledger_key(name, assignment.topic, p).encode())
            if value is None:
                continue
            try:
                restored[p] = list(codec.decode(value, BudgetLedger).entries)
            except DecodeError as exc:
                log.warning("ignoring an unreadable budget ledger of %s[%d]: %s", assignment.topic, p, exc)
        return restored

    def _ledgers(self) -> list[Outgoing]:
        """The ledgers of the partitions booked on in this batch, published with its outputs (under a consumer
        group only: alone, a replica has no one to hand them to)."""
        a = self._assignment
        if a is None:
            return []
        out: list[Outgoing] = []
        for name, budget in self._budgets():
            if budget is None:
                continue
            for p in budget.take_dirty():
                ledger = BudgetLedger(budget=name, source_topic=a.topic, partition=p, entries=tuple(budget.ledger(p)))
                out.append(Outgoing("budget", ledger.key.encode(), codec.encode(ledger), ledger))
        return out

    def _breaker_changed(self, state: str) -> None:
        self.metrics.breaker_open.set(1 if state == "open" else 0)
        self.metrics.breaker_transitions.labels(state).inc()
        log.warning("frontier circuit breaker is now %s", state)


def book_usage(metrics: Metrics, reply: FrontierReply) -> None:
    """Count a reply's tokens by kind (the stage's calls and the batch command's Message Batches alike)."""
    u = reply.usage
    for kind, tokens in (("input", u.input), ("output", u.output), ("cache_write", u.cache_write),
                         ("cache_read", u.cache_read)):
        metrics.frontier_tokens.labels(kind).inc(tokens)
