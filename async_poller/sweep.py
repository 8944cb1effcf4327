"""The final sweep: just before the deadline, wake every waiting job for one more look.

Jobs wait between polls by `FinalSweep.nap`, a timer plus a future rather than a task, so
100,000 waiting jobs cost little, and the sweep can wake them all at once. Once woken, jobs
ask the budget in the order they were last polled, so the budget left before the deadline
goes to the stalest statuses and TIMED_OUT results carry fresh `last_status` values.
"""

from __future__ import annotations

import asyncio

from .clock import Clock, TimerHandle

__all__ = ["FinalSweep"]


class FinalSweep:
    """Naps that end at their time, or all together when the sweep starts."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._napping: dict[int, asyncio.Future[None]] = {}
        self._timer: TimerHandle | None = None
        self.started = False

    async def nap(self, key: int, seconds: float) -> None:
        """Wait `seconds` of clock time, or less if the sweep starts meanwhile."""
        if self.started or seconds <= 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self._clock.call_later(seconds, lambda: _resolve(future))
        self._napping[key] = future
        try:
            await future
        finally:
            timer.cancel()
            del self._napping[key]

    def schedule(self, delay: float) -> None:
        """Start the sweep after `delay` clock seconds."""
        self._timer = self._clock.call_later(delay, self.start)

    def start(self) -> None:
        """Wake every napping job now."""
        self.started = True
        for future in self._napping.values():
            _resolve(future)

    def cancel(self) -> None:
        """Call off a sweep not yet started (the run ended first)."""
        if self._timer is not None:
            self._timer.cancel()

    def __repr__(self) -> str:
        return f"FinalSweep(started={self.started}, napping={len(self._napping)})"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
