"""Clocks: the scaled system clock and the virtual test clock."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from async_poller.clock import SystemClock, rfc3339
from async_poller.testing import VirtualClock


def test_rfc3339_has_milliseconds_and_z() -> None:
    """Timestamps are RFC 3339 UTC with milliseconds and a Z."""
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_800_000_000.1234) == "2027-01-15T08:00:00.123Z"


async def test_system_clock_scales_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """At scale 1000, a 50-second sleep is a 0.05-second timer of the event loop, and the
    clock has moved on by at least 50 seconds when it returns."""
    loop = asyncio.get_running_loop()
    timers: list[float] = []
    call_later = loop.call_later

    def spy(delay: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        timers.append(delay)
        return call_later(delay, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_later", spy)
    clock = SystemClock(scale=1000.0)
    before = clock.now()
    await clock.sleep(50.0)
    after = clock.now()
    monkeypatch.undo()
    assert timers == [0.05]
    assert after - before >= 50.0


def test_system_clock_reads_scaled_monotonic_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """`now()` is the monotonic time times the scale: 2.5 real seconds are 2500 at 1000."""
    clock = SystemClock(scale=1000.0)
    readings = iter([100.0, 102.5])
    monkeypatch.setattr(time, "monotonic", lambda: next(readings))
    assert clock.now() == 100_000.0
    assert clock.now() == 102_500.0


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
