"""AdaptiveRate: the cubic cut-and-recover curve, and a budget settling behind a server."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from async_poller._pacing.adaptive import AdaptiveRate
from async_poller._pacing.budget import RateBudget
from async_poller.config import Rate
from async_poller.testing import VirtualClock


def test_the_ceiling_holds_until_the_first_cut() -> None:
    """Before any overload signal the rate is the configured one, at any time."""
    rate = AdaptiveRate(1.0, recovery=60.0)
    assert [1.0, 1.0, 1.0] == [rate.at(t) for t in (-1e9, 0.0, 1e9)]


def test_a_cut_lowers_to_beta_and_lingers_near_the_refused_rate() -> None:
    """Cut at 0.8/s: 0.56/s at once, back at 0.8/s after `recovery`, and flat around it
    (the cubic's plateau), then on up to the ceiling."""
    rate = AdaptiveRate(1.0, recovery=60.0)
    rate.at(0.0)
    rate.cut(0.0, sent_at=0.0, resume_at=0.0)  # at the ceiling: 1.0 -> 0.7
    rate.cut(200.0, sent_at=200.0, resume_at=200.0)  # at 1.0 again: now from 1.0
    assert rate.at(200.0) == pytest.approx(0.7)
    slow = AdaptiveRate(1.0, recovery=60.0)
    slow.cut(0.0, sent_at=0.0, resume_at=0.0)
    slow.cut(30.0, sent_at=30.0, resume_at=30.0)
    refused = 1.0 - 0.3 * 0.5**3  # where the first curve stood at 30 s
    assert slow.at(30.0) == pytest.approx(0.7 * refused)
    assert slow.at(90.0) == pytest.approx(refused)
    assert slow.at(80.0) - slow.at(100.0) == pytest.approx(0.0, abs=0.01), "a plateau"
    assert 1.0 == slow.at(160.0)


def test_the_curve_starts_when_the_pause_ends() -> None:
    """During a Retry-After pause the rate stays at its lowest; recovery starts after."""
    rate = AdaptiveRate(1.0, recovery=60.0)
    rate.cut(0.0, sent_at=0.0, resume_at=120.0)
    assert rate.at(60.0) == rate.at(120.0) == pytest.approx(0.7)
    assert rate.at(180.0) == pytest.approx(1.0)


def test_refusals_of_older_requests_are_one_episode() -> None:
    """Refusals of requests sent before the last cut do not cut again."""
    rate = AdaptiveRate(1.0, recovery=60.0)
    assert rate.cut(10.0, sent_at=9.0, resume_at=10.0)
    assert not rate.cut(11.0, sent_at=9.5, resume_at=11.0)
    assert rate.at(11.0) > 0.7
    assert rate.cut(12.0, sent_at=10.5, resume_at=12.0)


def test_repeated_cuts_stop_at_the_floor_and_recovery_never_jumps() -> None:
    """Many cuts in a row bottom out at the floor; from there the climb back to the
    ceiling is continuous (no step above 2% of the ceiling per second)."""
    rate = AdaptiveRate(1.0, recovery=60.0, floor_share=0.05)
    for t in range(40):
        rate.cut(float(t), sent_at=float(t), resume_at=float(t))
    assert rate.at(39.0) == pytest.approx(0.05)
    curve = [rate.at(39.0 + s) for s in range(400)]
    assert max(b - a for a, b in itertools.pairwise(curve)) < 0.02
    assert min(b - a for a, b in itertools.pairwise(curve)) >= 0.0
    assert 1.0 == curve[-1]


class LeakyBucketServer:
    """nginx `limit_req` with no burst: admits a request only `interval` after the last
    admitted one; refusals cost nothing."""

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute
        self.last = -1e9
        self.admitted: list[float] = []
        self.refused = 0

    def admit(self, now: float) -> bool:
        if now - self.last < self.interval - 1e-9:
            self.refused += 1
            return False
        self.last = now
        self.admitted.append(now)
        return True


async def saturate(rate: Rate, server: LeakyBucketServer, minutes: float) -> RateBudget:
    """Keep the budget saturated for `minutes` of virtual time against `server`: every
    refusal is a 503 without Retry-After, as nginx sends it."""
    clock = VirtualClock()
    budget = RateBudget(rate, clock)

    async def client() -> None:
        while clock.now() < minutes * 60:
            async with budget.slot():
                sent = clock.now()
                await clock.sleep(0.05)
            if not server.admit(sent + 0.01):
                budget.throttle(0.0, sent_at=sent)

    await asyncio.gather(*(client() for _ in range(4)))
    await budget.aclose()
    return budget


async def test_a_rate_above_a_leaky_bucket_settles_below_it_with_few_refusals() -> None:
    """--rate 60/min behind a 50/min leaky bucket: under 5% refused, and the server's
    rate still well used (over 80%) once settled."""
    server = LeakyBucketServer(50)
    await saturate(Rate(60, 60.0), server, minutes=30)
    sent = len(server.admitted) + server.refused
    assert 0 < server.refused <= 0.05 * sent
    settled = [t for t in server.admitted if t >= 600]
    assert len(settled) / 20 >= 0.8 * 50


async def test_a_rate_below_a_leaky_bucket_is_never_refused() -> None:
    """The default 45/min behind a 50/min leaky bucket: paced, so never refused."""
    server = LeakyBucketServer(50)
    await saturate(Rate(45, 60.0), server, minutes=10)
    assert 0 == server.refused
    assert len(server.admitted) >= 10 * 45 - 1
