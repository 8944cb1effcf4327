"""The one time seam: every component reads time and sleeps through a `Clock`.

`SystemClock` is the real clock, optionally running `scale` times faster so that a simulated
hour passes in a minute (the simulator, demo, tests and benchmarks use the same scale on both
sides). `async_poller.testing.VirtualClock` moves time by hand for tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock", "TimerHandle", "rfc3339", "shared_timeline"]


class TimerHandle(Protocol):
    """A scheduled callback that can be called off."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Time as the poller sees it: all durations are in clock seconds."""

    def now(self) -> float:
        """Monotonic seconds; only differences mean anything."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch, for timestamps and HTTP dates."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for `seconds` of clock time."""
        ...

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """Raise `TimeoutError` in the body if it runs longer than `seconds` of clock time."""
        ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Run `callback` after `delay` clock seconds (no task needed: cheap by the thousand)."""
        ...


class SystemClock:
    """The machine's clock, running `scale` times faster than real time.

    `now()` is `time.monotonic() * scale`, so two processes with the same scale agree on
    differences; `wall()` starts at the real wall time when the clock is made.
    """

    def __init__(self, scale: float = 1.0) -> None:
        if not scale > 0:
            raise ValueError(f"time scale must be positive, got {scale!r}")
        self.scale = scale
        self._wall_anchor = time.time()
        self._mono_anchor = time.monotonic()

    def now(self) -> float:
        return time.monotonic() * self.scale

    def wall(self) -> float:
        return self._wall_anchor + (time.monotonic() - self._mono_anchor) * self.scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(max(0.0, seconds) / self.scale)

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, delay) / self.scale, callback)

    def __repr__(self) -> str:
        return f"SystemClock(scale={self.scale:g})"


def rfc3339(wall: float) -> str:
    """Format epoch seconds as RFC 3339 UTC with milliseconds and a `Z`."""
    stamp = datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def shared_timeline(clock: Clock) -> Callable[[], float]:
    """Clock seconds on a line that every process on this host agrees on, across restarts:
    the Unix time, scaled like `clock`. (A scaled `wall()` starts at each clock's own
    making, and monotonic time restarts at boot.) Other clocks have one process only."""
    if isinstance(clock, SystemClock):
        scale = clock.scale
        return lambda: time.time() * scale
    return clock.wall
