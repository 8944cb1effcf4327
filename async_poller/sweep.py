"""Naps between polls, and the final sweep that ends them all just before the deadline.

A run may hold 100,000 jobs that all wait at once, so a nap is one small heap entry and a
future, with a single clock timer for the earliest: not a task nor a timer per job. When
the sweep starts every napping job wakes; the jobs then ask the budget in the order they
were last polled, so the budget left before the deadline goes to the stalest statuses and
TIMED_OUT results carry a fresh `last_status`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math

from .clock import Clock, TimerHandle

__all__ = ["FinalSweep"]


class FinalSweep:
    """Naps that end at their time, or all together when the sweep starts."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._naps: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._timer: TimerHandle | None = None
        self._timer_at = math.inf
        self._sweep_timer: TimerHandle | None = None
        self.started = False

    async def nap(self, seconds: float) -> None:
        """Wait `seconds` of clock time, or less if the sweep starts meanwhile."""
        if seconds <= 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        when = self._clock.now() + seconds
        heapq.heappush(self._naps, (when, next(self._order), future))
        self._arm(when)
        await future  # a cancelled nap stays in the heap until its time, then is dropped

    def _arm(self, when: float) -> None:
        if when >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._clock.call_later(when - self._clock.now(), self._wake_due)

    def _wake_due(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now = self._clock.now()
        while self._naps and self._naps[0][0] <= now:
            _resolve(heapq.heappop(self._naps)[2])
        if self._naps:
            self._arm(self._naps[0][0])

    def schedule(self, delay: float) -> None:
        """Start the sweep after `delay` clock seconds."""
        self._sweep_timer = self._clock.call_later(delay, self.start)

    def start(self) -> None:
        """Wake every napping job now."""
        self.started = True
        for _, _, future in self._naps:
            _resolve(future)
        self._naps.clear()

    def cancel(self) -> None:
        """Stop the timers (the run ended)."""
        for timer in (self._timer, self._sweep_timer):
            if timer is not None:
                timer.cancel()

    def __repr__(self) -> str:
        return f"FinalSweep(started={self.started}, napping={len(self._naps)})"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
