"""Helpers for testing code that uses async-poller, public like `structlog.testing`.

`VirtualClock` is a `Clock` whose time jumps ahead whenever every task is waiting on it, so
an hour of polling runs in milliseconds and deterministically. `SteppedClock` moves only
when told to, for code that must not wait at all (a server under test, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, nullcontext
from types import TracebackType

__all__ = ["SteppedClock", "VirtualClock"]


class VirtualClock:
    """A `Clock` that auto-advances to the next timer once the event loop has nothing to run.

    Only for code whose tasks wait on this clock or on each other, not on real I/O: a task
    blocked on a socket looks idle, and time would jump past it, unless the wait for the
    I/O is inside `with clock.hold():`. Use one clock per test:
    two clocks with live timers in one loop each see the other's driver as work to do.
    """

    def __init__(self, start: float = 0.0, wall_start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._timers: list[tuple[float, int, _Timer]] = []
        self._sequence = itertools.count()
        self._driver: asyncio.Task[None] | None = None
        self._holds = 0

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._wall_offset + self._now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.call_later(max(0.0, seconds), wake)
        try:
            await future
        finally:
            timer.cancel()

    def timeout(self, seconds: float) -> _VirtualTimeout:
        return _VirtualTimeout(self, seconds)

    def call_later(self, delay: float, callback: Callable[[], object]) -> _Timer:
        """Run `callback` once the clock reaches now + `delay`."""
        timer = _Timer(callback)
        heapq.heappush(self._timers, (self._now + max(0.0, delay), next(self._sequence), timer))
        if self._driver is None or self._driver.done():
            self._driver = asyncio.get_running_loop().create_task(self._drive())
        return timer

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Keep time still for the block: around an await on real I/O (a server's answer),
        which would otherwise look like idleness and let time jump past it."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        while self._timers:
            # Drop called-off timers first: an idle clock must let its driver end, or two
            # clocks' drivers would keep each other "busy" forever.
            while self._timers and self._timers[0][2].cancelled:
                heapq.heappop(self._timers)
            if not self._timers:
                break
            await asyncio.sleep(0)
            # `_ready` holds the callbacks runnable now; only when it is empty is every task
            # blocked, and only then may time jump. CPython has kept this attribute since 3.4.
            if self._holds > 0 or len(getattr(loop, "_ready", ())) > 0:
                continue
            when, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._now = max(self._now, when)
                timer.callback()

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now:.3f}, timers={len(self._timers)})"


class SteppedClock:
    """A `Clock` that moves only by `advance()`; `sleep()` advances it at once and returns.

    Timeouts never fire. Timers from `call_later` run when `advance()` passes their time.
    """

    def __init__(self, start: float = 1000.0, wall_offset: float = 1_800_000_000.0) -> None:
        self.t = start
        self._wall_offset = wall_offset
        self._timers: list[tuple[float, int, _Timer]] = []
        self._sequence = itertools.count()

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self._wall_offset + self.t

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[None]:
        return nullcontext()

    def call_later(self, delay: float, callback: Callable[[], object]) -> _Timer:
        timer = _Timer(callback)
        heapq.heappush(self._timers, (self.t + max(0.0, delay), next(self._sequence), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward, running the timers that fall due on the way."""
        target = self.t + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, timer = heapq.heappop(self._timers)
            self.t = max(self.t, when)
            if not timer.cancelled:
                timer.callback()
        self.t = target


class _Timer:
    """A callback waiting in a `VirtualClock`; `cancel()` calls it off."""

    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _VirtualTimeout:
    """`asyncio.timeout`, but measured on a `VirtualClock`."""

    def __init__(self, clock: VirtualClock, seconds: float) -> None:
        self._clock = clock
        self._seconds = seconds
        self._task: asyncio.Task[object] | None = None
        self._timer: _Timer | None = None
        self._expired = False

    async def __aenter__(self) -> None:
        self._task = asyncio.current_task()
        self._timer = self._clock.call_later(max(0.0, self._seconds), self._expire)

    def _expire(self) -> None:
        if self._task is not None:
            self._expired = True
            self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        cancelled_by_us = self._expired and exc_type is asyncio.CancelledError
        if cancelled_by_us and self._task is not None and self._task.uncancel() == 0:
            raise TimeoutError from exc
