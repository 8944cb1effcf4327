"""RedisPacer: one budget shared through a real Redis server, in virtual time.

Each `RateBudget` over its own `RedisPacer` plays one process (on any machine); several of
them on one server are processes of one tenant. The server answers in real time, so every
wait for it holds the virtual clock (`VirtualClock.hold`) lest time jump past it.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections import Counter
from pathlib import Path

import pytest
import structlog

from async_poller._pacing.budget import RateBudget
from async_poller._pacing.tenant_redis import RedisPacer
from async_poller._pacing.tenant_sqlite import SqlitePacer
from async_poller.config import Rate
from async_poller.testing import VirtualClock

from .nginx import free_port
from .redis_server import RedisServer, redis_binary, running_redis
from .tenant_checks import RATE, assert_paced_together, spend

pytestmark = pytest.mark.e2e

TENANT = "tenant"


class Held:
    """A RedisPacer whose waits for the server keep the virtual clock still."""

    def __init__(self, pacer: RedisPacer, clock: VirtualClock) -> None:
        self.pacer = pacer
        self._clock = clock

    def per_second(self) -> float:
        return self.pacer.per_second()

    def paused_for(self) -> float:
        return self.pacer.paused_for()

    async def try_pass(self) -> float | None:
        with self._clock.hold():
            return await self.pacer.try_pass()

    def ended(self, *, used: bool = True) -> None:
        self.pacer.ended(used=used)

    def throttle(self, pause: float, *, sent_ago: float) -> None:
        self.pacer.throttle(pause, sent_ago=sent_ago)

    async def synced(self) -> None:
        with self._clock.hold():
            await self.pacer.synced()

    async def aclose(self) -> None:
        with self._clock.hold():
            await self.pacer.aclose()

    async def vanish(self) -> None:
        """Drop the connection and tell the store nothing, as `kill -9` would."""
        with self._clock.hold():
            await self.pacer._client.aclose()


def sharer(
    url: str,
    clock: VirtualClock,
    *,
    rate: Rate = RATE,
    burst: int = 1,
    failures: list[str] | None = None,
    timeout_s: float = 1.0,
) -> tuple[RateBudget, Held]:
    """One process's budget over the shared server, and its pacer."""
    pacer = RedisPacer(
        url, TENANT, rate, clock, timeline=clock.wall, burst=burst, max_request_s=30.0,
        on_failure=(failures if failures is not None else []).append, rng=random.Random(1),
        timeout_s=timeout_s,
    )  # fmt: skip
    held = Held(pacer, clock)
    return RateBudget(rate, clock, max_in_flight=8, pacer=held), held


async def test_sharers_are_paced_together(redis_store: RedisServer) -> None:
    """Two processes of one tenant get one request out every 10 s between them, not each;
    each gets a fair share."""
    clock = VirtualClock()
    (first, _), (second, _) = sharer(redis_store.url(), clock), sharer(redis_store.url(), clock)
    await assert_paced_together(first, second, clock)


async def test_a_restart_honours_what_its_predecessor_spent(redis_store: RedisServer) -> None:
    """A process killed mid-run (its requests' ends never told) after spending a whole
    window's allowance at once, and a new one started at once: the newcomer waits for the
    window to free up, so no window ever holds more than the limit."""
    clock = VirtualClock()
    log: list[tuple[float, str]] = []
    victim, victim_pacer = sharer(redis_store.url(), clock, burst=6)
    await spend(victim, clock, 6, "victim", log, latency=0.0)
    await victim_pacer.vanish()
    newcomer, _ = sharer(redis_store.url(), clock, burst=6)
    await spend(newcomer, clock, 6, "newcomer", log)
    starts = sorted(at for at, _ in log)
    in_window = [sum(1 for t in starts if t0 <= t < t0 + 60.0) for t0 in starts]
    assert max(in_window) <= RATE.limit
    assert min(at for at, name in log if name == "newcomer") >= 60.0
    await newcomer.aclose()


async def test_a_pause_one_sharer_was_told_holds_every_sharer(redis_store: RedisServer) -> None:
    """A 429 with Retry-After: 60 received by one process pauses the other, and the cut
    rate is the other's too."""
    clock = VirtualClock()
    (told, told_pacer), (other, _) = (
        sharer(redis_store.url(), clock),
        sharer(redis_store.url(), clock),
    )
    log: list[tuple[float, str]] = []
    await spend(told, clock, 1, "told", log)
    told.throttle(60.0, sent_at=clock.now())
    await told_pacer.synced()
    await spend(other, clock, 1, "other", log)
    assert log[-1][0] >= 60.0
    assert str(other.rate) == str(told.rate) != str(RATE)
    for budget in (told, other):
        await budget.aclose()


async def test_a_dead_process_holds_nothing_for_long(redis_store: RedisServer) -> None:
    """Requests of a process that died under way count only until their latest possible end
    plus a window; then the budget is whole again."""
    clock = VirtualClock()
    log: list[tuple[float, str]] = []
    burst = Rate(3, 60.0)
    dead, dead_pacer = sharer(redis_store.url(), clock, rate=burst)
    tasks = [asyncio.create_task(spend(dead, clock, 1, "dead", log, latency=1e9)) for _ in "abc"]
    await clock.sleep(45.0)  # three requests under way, never to end
    await dead_pacer.vanish()
    for task in tasks:
        task.cancel()
    survivor, _ = sharer(redis_store.url(), clock, rate=burst)
    await spend(survivor, clock, 1, "survivor", log)
    assert log[-1][0] == pytest.approx(log[0][0] + 30.0 + 60.0, abs=1.0)
    await survivor.aclose()


async def test_the_store_decides_exactly_as_the_sqlite_store(
    redis_store: RedisServer, tmp_path: Path
) -> None:
    """Two processes' random requests, ends and refusals, played on a SQLite store and on
    Redis alike: every answer, rate in force, pause and sharer count is the same, to the
    bit (the Lua scripts are pacer.decide, PaceState and AdaptiveRate, operation for
    operation)."""
    now = [1_800_000_000.0]
    clock = VirtualClock()  # only a pacer gone alone would use it

    def timeline() -> float:
        return now[0]

    path = tmp_path / "budget.db"
    sqlite = [
        SqlitePacer(
            path,
            TENANT,
            RATE,
            clock,
            timeline=timeline,
            burst=2,
            max_request_s=30.0,
            rng=random.Random(seed),
        )
        for seed in (1, 2)
    ]
    redis = [
        RedisPacer(
            redis_store.url(),
            TENANT,
            RATE,
            clock,
            timeline=timeline,
            burst=2,
            max_request_s=30.0,
            rng=random.Random(seed),
        )
        for seed in (1, 2)
    ]
    script = random.Random(7)
    in_flight = [0, 0]
    seen: Counter[str] = Counter()
    for _ in range(1000):
        now[0] += script.expovariate(1 / 3.0)
        who, action = script.randrange(2), script.random()
        if action < 0.5:
            answer = await sqlite[who].try_pass()
            assert answer == await redis[who].try_pass()
            in_flight[who] += answer is None
            seen["passed" if answer is None else "waited"] += 1
        elif action < 0.97 and in_flight[who]:
            used = script.random() < 0.9
            sqlite[who].ended(used=used)
            redis[who].ended(used=used)
            in_flight[who] -= 1
        elif action >= 0.97:
            pause, sent_ago = script.choice([0.0, 5.0, 40.0]), script.uniform(0.0, 30.0)
            sqlite[who].throttle(pause, sent_ago=sent_ago)
            redis[who].throttle(pause, sent_ago=sent_ago)
            await redis[who].synced()
            seen["throttled"] += 1
        for mine, theirs in zip(sqlite, redis, strict=True):
            assert mine.per_second() == theirs.per_second()
            assert mine.paused_for() == theirs.paused_for()
            assert mine.sharers == theirs.sharers
    assert min(seen.values()) >= 20, seen
    for pacer in sqlite:
        await pacer.aclose()
    for other in redis:
        await other.aclose()


async def test_a_tenant_s_keys_expire_a_few_windows_after_its_last_use(
    redis_store: RedisServer,
) -> None:
    """Every key of a tenant gets an expiry of three windows plus the longest request, so
    the state of a tenant nobody polls for any more vanishes by itself."""
    clock = VirtualClock()
    budget, _ = sharer(redis_store.url(), clock)
    await spend(budget, clock, 2, "one", [])
    await budget.aclose()
    with redis_store.client() as client:
        keys = sorted(key.decode() for key in client.keys("*"))
        ttls = [client.pttl(key) for key in keys]
    names = ("flights", "pace", "sharers")
    assert [f"async-poller:budget:v1:{{{TENANT}}}:{name}" for name in names] == keys
    kept_ms = (3 * 60.0 + 30.0) * 1000
    assert all(kept_ms - 5000 < ttl <= kept_ms for ttl in ttls), ttls


async def test_an_unreachable_store_means_a_warning_and_half_the_rate() -> None:
    """Nobody listens on the store's port: one failure report, naming the store but not its
    password, and pacing at half the rate."""
    clock = VirtualClock()
    failures: list[str] = []
    url = f"redis://:hunter2-canary@127.0.0.1:{free_port()}/0"
    budget, _ = sharer(url, clock, failures=failures)
    log: list[tuple[float, str]] = []
    with structlog.testing.capture_logs() as logged:
        await spend(budget, clock, 3, "alone", log)
    assert [0.0, 20.0, 40.0] == [at for at, _ in log]
    [failure] = failures
    assert "redis://***@127.0.0.1" in failure
    assert "going on alone at 3/min" in failure
    assert "hunter2" not in failure + repr(logged) + repr(budget)
    await budget.aclose()


async def test_a_server_that_does_not_answer_is_left_within_the_timeout() -> None:
    """A store that accepts the connection but never answers: after the socket timeout the
    pacer goes on alone, the event loop free all along."""
    clock = VirtualClock()
    with socket.create_server(("127.0.0.1", 0)) as silent:
        failures: list[str] = []
        budget, _ = sharer(
            f"redis://127.0.0.1:{silent.getsockname()[1]}/0", clock, failures=failures,
            timeout_s=0.1,
        )  # fmt: skip
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while not failures:
                ticks += 1
                await asyncio.sleep(0.01)

        log: list[tuple[float, str]] = []
        async with asyncio.timeout(5.0):  # the pacer gave up in about 0.2 s, not 5
            await asyncio.gather(spend(budget, clock, 2, "alone", log), ticker())
        await budget.aclose()
    assert ["alone", "alone"] == [name for _, name in log]
    [failure] = failures
    assert "Timeout" in failure
    assert ticks >= 5  # the loop ran on while the pacer waited for the server


async def test_a_store_lost_mid_run_keeps_its_pause_and_goes_on_alone(tmp_path: Path) -> None:
    """The server goes away while a pause it holds is in force: one failure report, and
    the process, now alone, still waits for the pause to end."""
    binary = redis_binary()
    clock = VirtualClock()
    failures: list[str] = []
    log: list[tuple[float, str]] = []
    with running_redis(binary, tmp_path / "redis") as server:
        budget, held_pacer = sharer(server.url(), clock, failures=failures)
        await spend(budget, clock, 1, "shared", log)
        budget.throttle(100.0, sent_at=clock.now())
        await held_pacer.synced()
    await spend(budget, clock, 1, "alone", log)
    [failure] = failures
    assert "going on alone at 3/min" in failure
    assert log[-1][0] >= 100.0
    await budget.aclose()


async def test_a_wrong_password_is_a_failure_like_any_other(redis_store: RedisServer) -> None:
    """The server refuses the password: one failure report without the password given, and
    the run goes on alone."""
    clock = VirtualClock()
    failures: list[str] = []
    url = f"redis://:wrong-canary@127.0.0.1:{redis_store.port}/0"
    budget, _ = sharer(url, clock, failures=failures)
    log: list[tuple[float, str]] = []
    await spend(budget, clock, 2, "alone", log)
    [failure] = failures
    assert "wrong-canary" not in failure
    assert [0.0, 20.0] == [at for at, _ in log]
    await budget.aclose()
