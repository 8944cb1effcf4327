"""What sharing the budget costs per request: no store, the SQLite file, Redis on loopback.

`python -m bench.store_cost` runs N cycles of `try_pass` + `ended` through each pacer at a
rate so high that every request passes at once, so each cycle is one check-and-record in
the store (one write transaction, one Lua script call), and prints microseconds per
request, the median of a few rounds. Redis is a child `redis-server` on a loopback port
(as in the tests): a network adds its round trip on top. A few seconds in all.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from async_poller._pacing.pacer import LocalPacer, Pacer
from async_poller._pacing.tenant_redis import RedisPacer
from async_poller._pacing.tenant_sqlite import SqlitePacer
from async_poller.clock import SystemClock, shared_timeline
from async_poller.config import Rate
from tests.redis_server import find_redis, running_redis

__all__ = ["main", "measure"]

HUGE = Rate(10**9, 1.0)
"""Every request passes: the pacing interval is a nanosecond, the window never fills."""


async def measure(make: Callable[[], Pacer], cycles: int, rounds: int) -> float:
    """Microseconds per try_pass + ended cycle through a fresh pacer: the median round."""
    results: list[float] = []
    for _ in range(rounds):
        pacer = make()
        assert await pacer.try_pass() is None  # connect, load the scripts: not measured
        pacer.ended()
        started = time.perf_counter()
        for _ in range(cycles):
            if await pacer.try_pass() is not None:
                raise RuntimeError(f"{pacer!r} held a request back at {HUGE}")
            pacer.ended()
        results.append((time.perf_counter() - started) / cycles * 1e6)
        await pacer.aclose()
    return statistics.median(results)


async def run(cycles: int, rounds: int, workdir: Path) -> list[tuple[str, float | None]]:
    """Each store's cost (None: no redis-server to measure)."""
    clock = SystemClock()
    timeline = shared_timeline(clock)

    def failed(reason: str) -> None:
        raise RuntimeError(reason)

    def sqlite() -> Pacer:
        return SqlitePacer(
            workdir / "budget.db", "bench", HUGE, clock, timeline=timeline, on_failure=failed
        )

    def redis(url: str) -> Callable[[], Pacer]:
        return lambda: RedisPacer(url, "bench", HUGE, clock, timeline=timeline, on_failure=failed)

    costs: list[tuple[str, float | None]] = [
        ("none (LocalPacer)", await measure(lambda: LocalPacer(HUGE, clock), cycles, rounds)),
        ("SQLite file (SqlitePacer)", await measure(sqlite, cycles, rounds)),
    ]
    binary = find_redis()
    if binary is None:
        return [*costs, ("Redis, loopback (RedisPacer)", None)]
    with running_redis(binary, workdir / "redis") as server:
        redis_cost = await measure(redis(server.url()), cycles, rounds)
    return [*costs, ("Redis, loopback (RedisPacer)", redis_cost)]


def render(costs: list[tuple[str, float | None]], cycles: int, rounds: int) -> str:
    """The results as a markdown table."""
    lines = [
        f"Budget store cost: {cycles} try_pass + ended cycles, median of {rounds} rounds",
        "",
        "| store | µs per request |",
        "|---|---|",
    ]
    for name, cost in costs:
        lines.append(f"| {name} | {'no redis-server' if cost is None else f'{cost:.1f}'} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.store_cost", description=__doc__)
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="store-cost-") as workdir:
        costs = asyncio.run(run(args.cycles, args.rounds, Path(workdir)))
    print(render(costs, args.cycles, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
