"""What the tests of both shared budget stores (SQLite and Redis) check alike."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

from async_poller._pacing.budget import RateBudget
from async_poller.config import Rate
from async_poller.testing import VirtualClock

RATE = Rate(6, 60.0)  # one request every 10 s


async def spend(
    budget: RateBudget,
    clock: VirtualClock,
    count: int,
    name: str,
    log: list[tuple[float, str]],
    *,
    latency: float = 0.5,
) -> None:
    """Send `count` requests through `budget`, as fast as it lets them go."""

    async def one() -> None:
        async with budget.slot():
            log.append((clock.now(), name))
            await clock.sleep(latency)

    await asyncio.gather(*(one() for _ in range(count)))


async def assert_paced_together(first: RateBudget, second: RateBudget, clock: VirtualClock) -> None:
    """12 requests each through two sharers at `RATE`: one every 10 s between them, and a
    fair share each; closes both."""
    log: list[tuple[float, str]] = []
    await asyncio.gather(
        spend(first, clock, 12, "first", log), spend(second, clock, 12, "second", log)
    )
    starts = sorted(at for at, _ in log)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 10.0 - 1e-6
    shares = Counter(name for at, name in log if at < starts[0] + 120)
    assert min(shares.values()) >= 4, shares  # of 12 in the first two minutes
    for budget in (first, second):
        await budget.aclose()
