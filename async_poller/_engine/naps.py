"""Naps between polls, and the final sweep that ends them all just before the deadline.

A run may hold 100,000 jobs that all wait at once, so a nap is one small heap entry and a
future, with a single clock timer for the earliest: not a task nor a timer per job. When
the sweep starts it wakes as many napping jobs as the budget can still serve, those polled
longest ago first; they then ask the budget in that order, so the budget left before the
deadline goes to the stalest statuses and TIMED_OUT results carry a fresh `last_status`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from typing import NamedTuple

from ..clock import Clock, TimerHandle

__all__ = ["Naps"]


class Naps:
    """Naps that end at their time, or all together when the sweep starts."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._naps: list[_Nap] = []
        self._order = itertools.count()
        self._timer: TimerHandle | None = None
        self._timer_at = math.inf
        self._sweep_timer: TimerHandle | None = None
        self.sweeping = False

    def nap(self, seconds: float, *, stale_since: float) -> asyncio.Future[None]:
        """A future done after `seconds` of clock time, or sooner if the sweep starts and
        this job is among the stalest (`stale_since`: when it was last polled; -inf for
        never). A plain future, not a coroutine: awaiting it adds no frame."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if seconds <= 0:
            future.set_result(None)
            return future
        when = self._clock.now() + seconds
        heapq.heappush(self._naps, _Nap(when, next(self._order), stale_since, future))
        self._arm(when)
        return future  # a cancelled nap stays in the heap until its time, then is dropped

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
        while self._naps and self._naps[0].when <= now:
            _resolve(heapq.heappop(self._naps).future)
        if self._naps:
            self._arm(self._naps[0].when)

    def schedule_sweep(self, delay: float, *, capacity: int) -> None:
        """Start the sweep after `delay` clock seconds, waking at most `capacity` jobs."""
        self._sweep_timer = self._clock.call_later(delay, lambda: self.sweep(capacity))

    def sweep(self, capacity: int) -> None:
        """Wake the `capacity` napping jobs polled longest ago (never polled first)."""
        self.sweeping = True
        live = [nap for nap in self._naps if not nap.future.done()]
        for nap in heapq.nsmallest(capacity, live, key=lambda nap: (nap.stale_since, nap.order)):
            _resolve(nap.future)

    def close(self) -> None:
        """The run ended: stop the timers and call off every nap still pending."""
        for timer in (self._timer, self._sweep_timer):
            if timer is not None:
                timer.cancel()
        for nap in self._naps:
            nap.future.cancel()
        self._naps.clear()

    def __repr__(self) -> str:
        return f"Naps(sweeping={self.sweeping}, napping={len(self._naps)})"


class _Nap(NamedTuple):
    when: float
    order: int
    stale_since: float
    future: asyncio.Future[None]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
