"""RateBudget: pacing, the sliding-window limit, priority order and adaptation, in virtual
time."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from async_poller._pacing.budget import FIRST, RateBudget, RetryBudget
from async_poller.config import Rate
from async_poller.testing import VirtualClock

from .helpers import examples


def max_in_any_window(spans: list[tuple[float, float]], period: float) -> int:
    """Most requests a server could have seen in one window: each request is seen at some
    moment of its [start, end] span, so a window holds it when the spans overlap."""
    starts = sorted(start for start, _ in spans)
    return max(sum(1 for start, end in spans if end >= t0 and start < t0 + period) for t0 in starts)


async def run_requests(
    budget: RateBudget, clock: VirtualClock, latencies: list[float]
) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []

    async def one(latency: float) -> None:
        async with budget.slot():
            start = clock.now()
            await clock.sleep(latency)
        spans.append((start, clock.now()))

    await asyncio.gather(*(one(latency) for latency in latencies))
    return spans


async def test_never_more_than_the_limit_in_any_window() -> None:
    """However long requests take, no window of one period sees more than the limit."""
    clock = VirtualClock()
    budget = RateBudget(Rate(5, 60.0), clock)
    spans = await run_requests(budget, clock, [0.5 * (i % 7) for i in range(40)])
    assert max_in_any_window(spans, 60.0) <= 5
    await budget.aclose()


@settings(max_examples=examples(40), deadline=None)
@given(
    limit=st.integers(1, 10),
    burst_share=st.floats(0.0, 1.0),
    period=st.floats(0.5, 100.0),
    latencies=st.lists(st.floats(0.0, 30.0), min_size=1, max_size=40),
)
def test_window_limit_holds_for_any_latencies(
    limit: int, burst_share: float, period: float, latencies: list[float]
) -> None:
    """Property: for any limit, burst, period and latencies, the window limit holds."""
    burst = 1 + round(burst_share * (limit - 1))

    async def scenario() -> list[tuple[float, float]]:
        clock = VirtualClock()
        budget = RateBudget(Rate(limit, period), clock, burst=burst)
        try:
            return await run_requests(budget, clock, latencies)
        finally:
            await budget.aclose()

    spans = asyncio.run(scenario())
    assert max_in_any_window(spans, period) <= limit


async def test_requests_leave_one_interval_apart() -> None:
    """Instant requests are paced one per period/limit, not let out a window at a time."""
    clock = VirtualClock()
    budget = RateBudget(Rate(3, 10.0), clock)
    spans = await run_requests(budget, clock, [0.0] * 7)
    starts = sorted(start for start, _ in spans)
    assert [round(start, 6) for start in starts] == [0.0, 3.333333, 6.666667, 10.0, 13.333333,
                                                     16.666667, 20.0]  # fmt: skip
    await budget.aclose()


async def test_a_burst_goes_at_once_then_pacing_and_the_window_hold() -> None:
    """`burst` requests go at once after an idle spell, then one per interval, and the
    window still caps the total at the limit."""
    clock = VirtualClock()
    budget = RateBudget(Rate(6, 60.0), clock, burst=3)
    spans = await run_requests(budget, clock, [0.0] * 7)
    assert [0.0, 0.0, 0.0, 10.0, 20.0, 30.0, 60.0] == sorted(start for start, _ in spans)
    await budget.aclose()


@settings(max_examples=examples(40), deadline=None)
@given(
    limit=st.integers(1, 10),
    period=st.floats(0.5, 100.0),
    latencies=st.lists(st.floats(0.0, 30.0), min_size=2, max_size=40),
)
def test_unthrottled_requests_never_closer_than_one_interval(
    limit: int, period: float, latencies: list[float]
) -> None:
    """Property: with burst 1, two grants are never closer than period/limit."""

    async def scenario() -> list[tuple[float, float]]:
        clock = VirtualClock()
        budget = RateBudget(Rate(limit, period), clock, max_in_flight=3)
        try:
            return await run_requests(budget, clock, latencies)
        finally:
            await budget.aclose()

    starts = sorted(start for start, _ in asyncio.run(scenario()))
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= period / limit - 1e-6


async def test_lowest_priority_value_goes_first() -> None:
    """When slots are scarce, waiters are served by priority, then by arrival."""
    clock = VirtualClock()
    budget = RateBudget(Rate(1, 1.0), clock)
    order: list[str] = []

    async def request(name: str, priority: float) -> None:
        async with budget.slot(priority):
            order.append(name)

    first = asyncio.create_task(request("occupant", 0.0))
    await asyncio.sleep(0)
    await asyncio.gather(
        request("late", 30.0),
        request("early", 10.0),
        request("refresh", FIRST),
        request("early-too", 10.0),
    )
    await first
    assert order == ["occupant", "refresh", "early", "early-too", "late"]
    await budget.aclose()


async def test_a_refusal_pauses_everyone_and_lowers_the_pace() -> None:
    """After throttle(30), nothing is granted for 30 s, then requests follow at the
    lowered rate (0.7 of 10/min: one per 60/7 s)."""
    clock = VirtualClock()
    budget = RateBudget(Rate(10, 60.0), clock)
    assert "7/min" == str(budget.throttle(30.0, sent_at=0.0))
    spans = await run_requests(budget, clock, [0.0] * 3)
    starts = sorted(start for start, _ in spans)
    assert 30.0 == starts[0]
    assert starts[1] - starts[0] == pytest.approx(60 / 7)
    assert 60 / 10 < starts[2] - starts[1] < 60 / 7, "recovering, still below the old pace"
    await budget.aclose()


async def test_a_refusal_without_a_pause_spaces_the_next_request() -> None:
    """A 503 without Retry-After pauses nobody, but the next request leaves one lowered
    interval after the refusal, not when the old pace would have let it."""
    clock = VirtualClock()
    budget = RateBudget(Rate(10, 60.0), clock)
    await run_requests(budget, clock, [0.0])
    budget.throttle(0.0, sent_at=0.0)
    spans = await run_requests(budget, clock, [0.0])
    assert [60 / 7] == pytest.approx([start for start, _ in spans])
    await budget.aclose()


async def test_refusals_of_requests_sent_before_a_cut_lower_the_rate_once() -> None:
    """Eight refusals of requests that were under way together cut the rate once; a
    refusal of a request sent after the cut cuts it again."""
    clock = VirtualClock()
    budget = RateBudget(Rate(40, 60.0), clock)
    for _ in range(8):
        budget.throttle(10.0, sent_at=0.0)
    assert "28/min" == str(budget.rate)
    await clock.sleep(11.0)
    budget.throttle(0.0, sent_at=0.0)
    assert budget.rate.limit > 28.0, "sent before the cut: ignored, and recovery goes on"
    budget.throttle(0.0, sent_at=11.0)
    assert budget.rate.limit < 21.0, "a new episode"
    await budget.aclose()


async def test_rate_recovers_smoothly_to_the_configured_rate() -> None:
    """After a cut the rate climbs back in small steps, never above the configured rate,
    and is whole again one recovery period (one window) after the cut."""
    clock = VirtualClock()
    budget = RateBudget(Rate(40, 60.0), clock)
    budget.throttle(0.0, sent_at=0.0)
    seen = []
    for _ in range(90):
        seen.append(budget.rate.limit)
        await clock.sleep(1.0)
    steps = [later - earlier for earlier, later in itertools.pairwise(seen)]
    assert 28.0 == pytest.approx(seen[0])
    assert min(steps) >= 0.0
    assert max(steps) < 1.0, "no jump: at most a few percent of the rate per second"
    assert 40.0 == seen[60] == seen[-1]
    await budget.aclose()


async def test_cancelled_waiter_does_not_spend_a_slot() -> None:
    """A waiter cancelled before its turn leaves the window untouched."""
    clock = VirtualClock()
    budget = RateBudget(Rate(1, 10.0), clock)
    holder = asyncio.create_task(run_requests(budget, clock, [5.0]))
    await asyncio.sleep(0)

    async def wait_for_slot() -> None:
        async with budget.slot():
            raise AssertionError("must not be granted")

    waiter = asyncio.create_task(wait_for_slot())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await holder
    spans = await run_requests(budget, clock, [0.0])
    assert spans == [(15.0, 15.0)]
    assert "waiting=0" in repr(budget)
    await budget.aclose()


def test_retry_budget_allows_a_floor_then_a_fraction_of_first_tries() -> None:
    """Ten early retries at once, then one per five first tries, never more."""
    budget = RetryBudget(ratio=0.2, floor=10)
    assert sum(budget.try_spend() for _ in range(50)) == 10
    for _ in range(25):
        budget.first_try()
    assert sum(budget.try_spend() for _ in range(50)) == 5
    assert budget.retries <= budget.floor + budget.ratio * budget.first_tries


def test_retry_budget_credit_is_capped() -> None:
    """A long healthy spell does not bank more than `floor` retries."""
    budget = RetryBudget(ratio=0.2, floor=10)
    for _ in range(10_000):
        budget.first_try()
    assert sum(budget.try_spend() for _ in range(100)) == 10
