"""Escalation limits: token bucket, circuit breaker and hourly budget, driven by a hand-advanced clock."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from pipeline.adjudication.limits import BreakerState, CircuitBreaker, EscalationBudget, TokenBucket
from tests.support.fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# --- TokenBucket -------------------------------------------------------------------------------------


def test_a_new_bucket_starts_full_and_allows_a_burst(clock: FakeClock) -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=3, clock=clock)
    assert [bucket.try_take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_take() > 0


def test_an_empty_bucket_refills_at_rate_per_s(clock: FakeClock) -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=4, clock=clock)
    assert bucket.try_take(4) == 0.0
    clock.advance(1.0)
    assert bucket.tokens == 2.0
    assert bucket.try_take(2) == 0.0
    assert bucket.try_take() > 0


def test_refill_never_stores_more_than_burst(clock: FakeClock) -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=2, clock=clock)
    clock.advance(3600.0)
    assert bucket.tokens == 2.0
    assert bucket.try_take(2) == 0.0
    assert bucket.try_take() == pytest.approx(0.1)


def test_try_take_returns_the_exact_wait_and_takes_nothing_when_short(clock: FakeClock) -> None:
    bucket = TokenBucket(rate_per_s=4.0, burst=4, clock=clock)
    bucket.try_take(4)
    assert bucket.try_take(1) == 0.25
    assert bucket.try_take(2) == 0.5
    clock.advance(0.125)
    assert bucket.tokens == 0.5  # the refused calls took nothing
    assert bucket.try_take(1) == 0.125


def test_waiting_the_returned_time_is_always_enough(clock: FakeClock) -> None:
    bucket = TokenBucket(rate_per_s=3.0, burst=5, clock=clock)  # 1/3 has no exact float
    bucket.try_take(5)
    for _ in range(100):
        clock.advance(0.1)
        wait = bucket.try_take(1.7)
        clock.advance(wait)
        assert bucket.try_take(1.7) == 0.0


def test_taking_more_than_burst_or_a_negative_amount_is_a_bug(clock: FakeClock) -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=2, clock=clock)
    with pytest.raises(ValueError, match="burst"):
        bucket.try_take(3)
    with pytest.raises(ValueError, match="n must be"):
        bucket.try_take(-1)


async def test_take_sleeps_until_the_tokens_are_there() -> None:
    bucket = TokenBucket(rate_per_s=50.0, burst=1)  # real clock: one token every 20 ms
    started = time.monotonic()
    await bucket.take()
    assert time.monotonic() - started < 0.01  # the first token was stored
    await bucket.take()
    assert 0.015 <= time.monotonic() - started < 0.15


async def test_concurrent_takers_are_paced_at_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=100.0, burst=1)
    started = time.monotonic()
    await asyncio.gather(*(bucket.take() for _ in range(4)))  # one stored, three refilled
    assert 0.025 <= time.monotonic() - started < 0.15


@pytest.mark.parametrize(
    ("rate", "burst", "named"), [(0.0, 1, "rate_per_s"), (math.nan, 1, "rate_per_s"), (1.0, 0, "burst")]
)
def test_bucket_rejects_bad_arguments_by_name(rate: float, burst: int, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        TokenBucket(rate, burst)


# --- CircuitBreaker ----------------------------------------------------------------------------------


def open_breaker(clock: FakeClock, threshold: int = 3, reset_after_s: float = 10.0) -> CircuitBreaker:
    breaker = CircuitBreaker(threshold, reset_after_s, clock=clock)
    for _ in range(threshold):
        breaker.record_failure()
    assert breaker.state == "open"
    return breaker


def test_a_breaker_starts_closed_and_allows_calls(clock: FakeClock) -> None:
    breaker = CircuitBreaker(3, 10.0, clock=clock)
    assert breaker.state == "closed"
    assert breaker.allow()
    assert breaker.seconds_until_trial() == 0.0


def test_it_opens_after_threshold_consecutive_failures(clock: FakeClock) -> None:
    breaker = CircuitBreaker(3, 10.0, clock=clock)
    states = []
    for _ in range(3):
        states.append(breaker.state)
        breaker.record_failure()
    assert states == ["closed", "closed", "closed"]
    assert breaker.state == "open"
    assert not breaker.allow()


def test_a_success_resets_the_consecutive_failure_count(clock: FakeClock) -> None:
    breaker = CircuitBreaker(3, 10.0, clock=clock)
    for _ in range(5):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state == "closed"


def test_it_stays_open_until_reset_after_s_passed(clock: FakeClock) -> None:
    breaker = open_breaker(clock, reset_after_s=10.0)
    clock.advance(9.5)
    assert not breaker.allow()
    assert breaker.seconds_until_trial() == 0.5
    assert breaker.state == "open"


def test_a_late_failure_while_open_does_not_extend_the_wait(clock: FakeClock) -> None:
    breaker = open_breaker(clock, reset_after_s=10.0)
    clock.advance(5.0)
    breaker.record_failure()  # from a call started before it opened
    breaker.record_success()
    assert breaker.state == "open"
    assert breaker.seconds_until_trial() == 5.0


def test_half_open_lets_exactly_one_trial_through(clock: FakeClock) -> None:
    breaker = open_breaker(clock, reset_after_s=10.0)
    clock.advance(10.0)
    assert breaker.seconds_until_trial() == 0.0
    assert breaker.allow()
    assert breaker.state == "half_open"
    assert breaker.seconds_until_trial() == 0.0
    clock.advance(100.0)
    assert [breaker.allow() for _ in range(3)] == [False, False, False]


def test_a_successful_trial_closes_it(clock: FakeClock) -> None:
    breaker = open_breaker(clock)
    clock.advance(10.0)
    breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow()
    breaker.record_failure()  # the failure count starts over
    assert breaker.state == "closed"


def test_a_failed_trial_reopens_it_for_reset_after_s_again(clock: FakeClock) -> None:
    breaker = open_breaker(clock, reset_after_s=10.0)
    clock.advance(12.0)
    breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.seconds_until_trial() == 10.0
    clock.advance(9.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow()


def test_on_change_sees_every_transition_in_order(clock: FakeClock) -> None:
    seen: list[BreakerState] = []
    breaker = CircuitBreaker(2, 10.0, clock=clock)
    breaker.on_change = seen.append
    breaker.record_failure()
    breaker.record_failure()  # closed -> open
    breaker.record_failure()  # ignored while open
    clock.advance(10.0)
    breaker.allow()  # open -> half_open
    breaker.allow()  # refused, no transition
    breaker.record_failure()  # half_open -> open
    clock.advance(10.0)
    breaker.allow()  # open -> half_open
    breaker.record_success()  # half_open -> closed
    breaker.record_success()  # no transition
    assert seen == ["open", "half_open", "open", "half_open", "closed"]


@pytest.mark.parametrize(
    ("threshold", "reset", "named"),
    [(0, 1.0, "failure_threshold"), (1, 0.0, "reset_after_s"), (1, -1.0, "reset_after_s")],
)
def test_breaker_rejects_bad_arguments_by_name(threshold: int, reset: float, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        CircuitBreaker(threshold, reset)


# --- EscalationBudget --------------------------------------------------------------------------------


def test_the_request_cap_counts_requests_in_the_last_hour(clock: FakeClock) -> None:
    budget = EscalationBudget(max_requests_per_hour=2, max_usd_per_hour=None, clock=clock)
    assert budget.allows(0.0)
    budget.record(0.0)
    budget.record(0.0)
    assert budget.requests_in_window == 2
    assert not budget.allows(0.0)


def test_the_dollar_cap_includes_the_estimate_of_the_next_request(clock: FakeClock) -> None:
    budget = EscalationBudget(max_requests_per_hour=None, max_usd_per_hour=1.0, clock=clock)
    budget.record(0.5)
    budget.record(0.25)
    assert budget.usd_in_window == 0.75
    assert budget.allows(0.25)  # exactly at the cap fits
    assert not budget.allows(0.375)


def test_a_real_cost_above_the_estimate_can_overshoot_and_then_blocks(clock: FakeClock) -> None:
    budget = EscalationBudget(max_requests_per_hour=None, max_usd_per_hour=1.0, clock=clock)
    assert budget.allows(0.5)
    budget.record(1.5)
    assert budget.usd_in_window == 1.5
    assert not budget.allows(0.0)


def test_entries_drop_out_3600_s_after_they_were_booked(clock: FakeClock) -> None:
    budget = EscalationBudget(max_requests_per_hour=2, max_usd_per_hour=1.0, clock=clock)
    budget.record(0.5)
    clock.advance(1800.0)
    budget.record(0.5)
    clock.advance(1799.0)
    assert (budget.requests_in_window, budget.usd_in_window) == (2, 1.0)
    clock.advance(1.0)
    assert (budget.requests_in_window, budget.usd_in_window) == (1, 0.5)
    clock.advance(1800.0)
    assert (budget.requests_in_window, budget.usd_in_window) == (0, 0.0)


def test_seconds_until_room_is_zero_when_it_allows(clock: FakeClock) -> None:
    budget = EscalationBudget(max_requests_per_hour=5, max_usd_per_hour=5.0, clock=clock)
    budget.record(1.0)
    assert budget.seconds_until_room(1.0) == 0.0


def test_seconds_until_room_waits_for_the_oldest_request_under_the_request_cap(clock: FakeClock) -> None:
    budget = EscalationBudget(max_requests_per_hour=2, max_usd_per_hour=None, clock=clock)
    budget.record(0.0)
    clock.advance(600.0)
    budget.record(0.0)
    clock.advance(600.0)
    assert budget.seconds_until_room(0.0) == 2400.0
    clock.advance(2400.0)
    assert budget.allows(0.0)


def test_seconds_until_room_waits_for_enough_dollars_to_age_out(clock: FakeClock) -> None:
    budget = EscalationBudget(max_requests_per_hour=None, max_usd_per_hour=1.0, clock=clock)
    for cost in (0.25, 0.25, 0.5):
        budget.record(cost)
        clock.advance(100.0)
    # 1.0 spent; 0.5 more needs the first two entries (booked at +0 and +100 s) gone.
    assert budget.seconds_until_room(0.5) == 3600.0 - 300.0 + 100.0
    clock.advance(3399.0)
    assert not budget.allows(0.5)
    clock.advance(1.0)
    assert budget.allows(0.5)


def test_seconds_until_room_agrees_with_allows_for_awkward_floats(clock: FakeClock) -> None:
    budget = EscalationBudget(max_requests_per_hour=None, max_usd_per_hour=0.3, clock=clock)
    for _ in range(3):
        budget.record(0.1)
        clock.advance(7.3)
    wait = budget.seconds_until_room(0.2)
    assert wait > 0
    clock.advance(wait)
    assert budget.allows(0.2)


def test_seconds_until_room_is_infinite_when_the_request_can_never_fit(clock: FakeClock) -> None:
    assert EscalationBudget(None, 1.0, clock=clock).seconds_until_room(1.5) == math.inf
    assert EscalationBudget(0, None, clock=clock).seconds_until_room(0.0) == math.inf


def test_none_means_unlimited(clock: FakeClock) -> None:
    budget = EscalationBudget(max_requests_per_hour=None, max_usd_per_hour=None, clock=clock)
    for _ in range(10_000):
        budget.record(100.0)
    assert budget.allows(1e6)
    assert budget.seconds_until_room(1e6) == 0.0
    assert budget.requests_in_window == 10_000


@pytest.mark.parametrize(
    ("requests", "usd", "named"),
    [(-1, None, "max_requests_per_hour"), (None, -0.01, "max_usd_per_hour"), (None, math.nan, "max_usd_per_hour")],
)
def test_budget_rejects_bad_limits_by_name(requests: int | None, usd: float | None, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        EscalationBudget(requests, usd)


def test_budget_rejects_negative_or_non_finite_dollars(clock: FakeClock) -> None:
    budget = EscalationBudget(None, None, clock=clock)
    with pytest.raises(ValueError, match="est_usd"):
        budget.allows(-1.0)
    with pytest.raises(ValueError, match="usd"):
        budget.record(math.inf)
