"""Clocks: the scaled system clock and the virtual test clock."""

from __future__ import annotations

import asyncio
import time

import pytest

from async_poller.clock import SystemClock, rfc3339
from async_poller.testing import VirtualClock


def test_rfc3339_has_milliseconds_and_z() -> None:
    """Timestamps are RFC 3339 UTC with milliseconds and a Z."""
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_800_000_000.1234) == "2027-01-15T08:00:00.123Z"


async def test_system_clock_scales_sleep() -> None:
    """At scale 1000, a 50-second sleep advances the clock by about 50 seconds."""
    clock = SystemClock(scale=1000.0)
    before = clock.now()
    await clock.sleep(50.0)
    assert clock.now() - before >= 50.0


async def test_system_clock_timeout_is_scaled() -> None:
    """A scaled timeout fires in clock seconds."""
    clock = SystemClock(scale=1000.0)
    with pytest.raises(TimeoutError):
        async with clock.timeout(5.0):
            await clock.sleep(500.0)


def test_system_clock_rejects_nonpositive_scale() -> None:
    """A zero or negative scale makes no sense."""
    with pytest.raises(ValueError, match="positive"):
        SystemClock(scale=0)


async def test_virtual_clock_jumps_to_the_next_timer() -> None:
    """Virtual time moves straight to each wake-up, in order."""
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    await asyncio.gather(sleeper("hour", 3600.0), sleeper("second", 1.0), sleeper("minute", 60.0))
    assert woke == [("second", 1.0), ("minute", 60.0), ("hour", 3600.0)]


async def test_virtual_timeout_fires_in_virtual_time() -> None:
    """A virtual timeout raises TimeoutError once its virtual time passes."""
    clock = VirtualClock()
    with pytest.raises(TimeoutError):
        async with clock.timeout(10.0):
            await clock.sleep(20.0)
    assert clock.now() == 10.0


async def test_virtual_timeout_does_not_fire_when_body_finishes() -> None:
    """A body that ends in time is not cancelled later."""
    clock = VirtualClock()
    async with clock.timeout(10.0):
        await clock.sleep(5.0)
    await clock.sleep(20.0)
    assert clock.now() == 25.0


async def test_virtual_time_stands_still_while_held() -> None:
    """While a task awaits real I/O inside `hold()`, a sleeper's timer does not fire: time
    moves on only once the I/O is done."""
    clock = VirtualClock()
    woke: list[float] = []
    answered: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(60.0)
        woke.append(clock.now())

    async def awaits_a_server() -> None:
        with clock.hold():
            await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.05)
        answered.append(clock.now())

    await asyncio.gather(sleeper(), awaits_a_server())
    assert ([0.0], [60.0]) == (answered, woke)
