"""RateBudget: the sliding-window limit, priority order and throttling, in virtual time."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from async_poller.budget import FIRST, RateBudget, RetryBudget
from async_poller.config import Rate
from async_poller.testing import VirtualClock


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


@settings(max_examples=40, deadline=None)
@given(
    limit=st.integers(1, 10),
    period=st.floats(0.5, 100.0),
    latencies=st.lists(st.floats(0.0, 30.0), min_size=1, max_size=40),
)
def test_window_limit_holds_for_any_latencies(
    limit: int, period: float, latencies: list[float]
) -> None:
    """Property: for any limit, period and latencies, the window limit holds."""

    async def scenario() -> list[tuple[float, float]]:
        clock = VirtualClock()
        budget = RateBudget(Rate(limit, period), clock)
        try:
            return await run_requests(budget, clock, latencies)
        finally:
            await budget.aclose()

    spans = asyncio.run(scenario())
    assert max_in_any_window(spans, period) <= limit


async def test_a_full_window_of_instant_requests_goes_at_once() -> None:
    """An idle budget grants up to the limit at once, then waits one period for more."""
    clock = VirtualClock()
    budget = RateBudget(Rate(3, 10.0), clock)
    spans = await run_requests(budget, clock, [0.0] * 7)
    assert [start for start, _ in sorted(spans)] == [0.0, 0.0, 0.0, 10.0, 10.0, 10.0, 20.0]
    await budget.aclose()


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


async def test_throttle_pauses_everyone_and_halves_the_rate() -> None:
    """After throttle(30), nothing is granted for 30 s and the limit is halved."""
    clock = VirtualClock()
    budget = RateBudget(Rate(10, 60.0), clock)
    assert str(budget.throttle(30.0)) == "5/min"
    spans = await run_requests(budget, clock, [0.0] * 6)
    starts = sorted(start for start, _ in spans)
    assert starts[0] == 30.0
    assert starts[:5] == [30.0] * 5
    assert starts[5] >= 60.0  # the window and the slowly recovering limit both hold it back
    await budget.aclose()


async def test_rate_recovers_after_quiet_periods() -> None:
    """The halved limit grows back by a tenth of the configured limit per quiet period."""
    clock = VirtualClock()
    budget = RateBudget(Rate(20, 60.0), clock)
    budget.throttle(0.0)
    assert budget.rate.limit == 10
    await clock.sleep(60.0)
    assert budget.rate.limit == 12
    await clock.sleep(600.0)
    assert budget.rate.limit == 20
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


async def test_many_429s_in_one_pause_halve_the_rate_once() -> None:
    """Eight 429s from requests that were in flight together halve the budget only once."""
    clock = VirtualClock()
    budget = RateBudget(Rate(40, 60.0), clock)
    for _ in range(8):
        budget.throttle(10.0)
    assert budget.rate.limit == 20
    await clock.sleep(11.0)
    budget.throttle(10.0)
    assert budget.rate.limit == 10, "a 429 after the pause is a new episode"
    await budget.aclose()
