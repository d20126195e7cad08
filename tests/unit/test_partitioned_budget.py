"""PartitionedBudget: the hourly caps split over the source topic's partitions, spend booked per partition and handed
on with it, so any number of replicas together keep the caps; and the adjudication stage's rebalance hook."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from pipeline.adjudication.backends import FrontierReply
from pipeline.adjudication.limits import LEDGER_BUCKET_S, WINDOW_S, PartitionedBudget
from pipeline.adjudication.prompt import FrontierRequest
from pipeline.records import BudgetLedger, Verdict, ledger_key
from pipeline.stage import Assignment
from tests.unit.test_adjudication_stage import Scripted, answer, no_wait, raw, stage, with_policy


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def spend(budget: PartitionedBudget, est: float = 0.0, usd: float = 0.0) -> int:
    """Requests booked until the budget says no."""
    n = 0
    while budget.allows(est):
        budget.record(usd)
        n += 1
        assert n < 10_000
    return n


def test_alone_a_budget_is_the_whole_caps() -> None:
    assert spend(PartitionedBudget(7, None, clock=Clock())) == 7
    assert spend(PartitionedBudget(None, 1.0, clock=Clock()), est=0.1, usd=0.1) == 10
    assert spend(PartitionedBudget(0, None, clock=Clock())) == 0


@pytest.mark.parametrize(("cap", "total"), [(10, 4), (20, 4), (3, 4), (7, 3), (100, 7)])
def test_request_allowances_add_up_to_the_cap_over_any_split_among_replicas(cap: int, total: int) -> None:
    rng = random.Random(cap * total)
    for _ in range(20):
        owners = [rng.randrange(3) for _ in range(total)]  # 3 replicas, some may hold nothing
        spent = 0
        for replica in range(3):
            budget = PartitionedBudget(cap, None, clock=Clock())
            budget.assign([p for p in range(total) if owners[p] == replica], total)
            spent += spend(budget)
        assert spent == cap


def test_dollar_allowances_add_up_to_the_cap() -> None:
    clock = Clock()
    spent = 0.0
    for held in ([0, 1], [2], [3]):
        budget = PartitionedBudget(None, 2.0, clock=clock)
        budget.assign(held, 4)
        spent += spend(budget, est=0.05, usd=0.05) * 0.05
    assert spent <= 2.0 + 1e-9 and spent > 2.0 - 4 * 0.05


def test_a_replica_that_holds_no_partition_spends_nothing() -> None:
    budget = PartitionedBudget(100, 10.0, clock=Clock())
    budget.assign([], 4)
    assert not budget.allows(0.0) and budget.share == 0.0
    assert budget.seconds_until_room(0.0) == math.inf
    with pytest.raises(RuntimeError):
        budget.record(0.0)


def test_spend_travels_with_the_partition_to_its_next_owner() -> None:
    clock = Clock()
    first = PartitionedBudget(20, None, clock=clock)
    first.assign([0, 1, 2, 3], 4)
    assert spend(first) == 20
    ledgers = {p: first.ledger(p) for p in first.take_dirty()}
    assert sorted(ledgers) == [0, 1, 2, 3]
    # The first replica crashes or leaves; two others take the partitions and the ledgers over.
    second, third = PartitionedBudget(20, None, clock=clock), PartitionedBudget(20, None, clock=clock)
    second.assign([0, 1], 4, ledgers)
    third.assign([2, 3], 4, ledgers)
    assert spend(second) + spend(third) == 0
    # An hour (and a bucket) later the bookings have aged out.
    clock.now += WINDOW_S + LEDGER_BUCKET_S
    assert spend(second) + spend(third) == 20


def test_a_rebalance_without_ledgers_is_what_goes_wrong_and_a_kept_partition_keeps_its_bookings() -> None:
    clock = Clock()
    budget = PartitionedBudget(8, None, clock=clock)
    budget.assign([0, 1], 2)
    assert spend(budget) == 8
    budget.assign([1], 2)  # partition 0 went away; 1 stays with its bookings
    assert spend(budget) == 0
    budget.assign([0, 1], 2)  # 0 comes back with no ledger: its allowance is fresh (why ledgers are published)
    assert spend(budget) == 4


def test_seconds_until_room_is_when_the_oldest_bucket_of_a_partition_ages_out() -> None:
    clock = Clock(1_800_000_000.0)
    budget = PartitionedBudget(2, None, clock=clock)
    budget.assign([0, 1], 2)
    assert spend(budget) == 2
    bucket_end = (math.floor(clock.now / LEDGER_BUCKET_S) + 1) * LEDGER_BUCKET_S
    assert budget.seconds_until_room(0.0) == pytest.approx(bucket_end + WINDOW_S - clock.now)
    clock.now = bucket_end + WINDOW_S
    assert budget.allows(0.0)


def test_bookings_in_one_bucket_are_one_ledger_entry() -> None:
    clock = Clock(1_800_000_000.0)
    budget = PartitionedBudget(None, None, clock=clock)
    for _ in range(5):
        budget.record(0.01)
    clock.now += LEDGER_BUCKET_S
    budget.record(0.02)
    entries = budget.ledger(0)
    assert [r for _, r, _ in entries] == [5, 1]
    assert entries[0][2] == pytest.approx(0.05)


async def test_the_stage_splits_its_budget_by_assignment_and_publishes_ledgers_with_the_batch() -> None:
    capped = with_policy(**{"max_requests_per_hour: 2000": "max_requests_per_hour: 4"})  # 1 per partition of 4
    s = stage(Scripted(default=answer()), capped)
    s.assigned(Assignment("adjudication", frozenset({0}), 4))
    outs = await s.process([raw(f"p{i}") for i in range(3)], no_wait)
    routes = sorted(o.record.route for o in outs if isinstance(o.record, Verdict))
    assert routes == ["fallback", "fallback", "frontier"]  # a quarter of the budget
    [out] = [o for o in outs if o.role == "budget"]
    ledger = out.record
    assert isinstance(ledger, BudgetLedger) and (ledger.budget, ledger.partition) == ("escalation", 0)
    assert sum(r for _, r, _ in ledger.entries) == 1
    assert out.key == ledger_key("escalation", "adjudication", 0).encode() and out.source is None

    # Its next owner reads the ledger at the rebalance: the partition's allowance is spent already.
    scripted = Scripted(default=answer())
    t = stage(scripted, capped)
    t.assigned(Assignment("adjudication", frozenset({0}), 4, {out.key or b"": out.value}))
    later = await t.process([raw("q1")], no_wait)
    assert scripted.requests == [] and [o.role for o in later] == ["verdicts"]


async def test_alone_the_stage_publishes_no_ledger() -> None:
    s = stage(Scripted(default=answer()))
    outs = await s.process([raw("p1")], no_wait)
    assert [o.role for o in outs] == ["verdicts", "labels"]


# -- calls in flight ---------------------------------------------------------------------------------------------


def test_calls_in_flight_hold_their_room_until_they_are_settled_or_released() -> None:
    budget = PartitionedBudget(3, 1.0, clock=Clock())
    first, second, third = (budget.reserve(0.1) for _ in range(3))
    assert first and second and third and budget.in_flight == 3
    assert budget.reserve(0.1) is None and not budget.allows(0.1)  # the cap counts what is in flight
    assert budget.requests_in_window == 0  # nothing booked yet
    budget.release(third)  # not sent: its room is free again
    assert budget.allows(0.1)
    budget.settle(first, 0.25)
    budget.settle(second, 0.0)  # sent and failed: a request all the same
    assert (budget.requests_in_window, budget.usd_in_window, budget.in_flight) == (2, 0.25, 0)
    assert budget.reserve(0.1) is not None and budget.reserve(0.1) is None


def test_dollars_in_flight_count_at_their_estimate() -> None:
    budget = PartitionedBudget(None, 1.0, clock=Clock())
    assert budget.reserve(0.4) and budget.reserve(0.4)
    assert budget.reserve(0.4) is None  # 1.2 estimated > 1.0


async def test_the_stage_never_has_more_calls_in_flight_than_the_cap_allows() -> None:
    gate = asyncio.Event()

    class Slow(Scripted):
        async def adjudicate(self, request: FrontierRequest) -> FrontierReply:
            self.requests.append(request)
            await gate.wait()
            return answer()

    capped = with_policy(**{"max_requests_per_hour: 2000": "max_requests_per_hour: 3"})
    slow = Slow()
    s = stage(slow, capped, concurrency=8)
    running = asyncio.create_task(s.process([raw(f"p{i}") for i in range(8)], no_wait))
    await asyncio.sleep(0.05)
    assert len(slow.requests) == 3  # eight slots, three calls: the other five fell back without a call
    gate.set()
    outs = await running
    routes = sorted(o.record.route for o in outs if isinstance(o.record, Verdict))
    assert routes == ["fallback"] * 5 + ["frontier"] * 3
