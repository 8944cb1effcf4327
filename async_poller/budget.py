"""The shared request budget: at most N requests in any sliding window, best-priority first.

A sliding-window log rather than a token bucket (aiolimiter's leaky bucket lets up to twice
the limit through in one window after an idle spell). A request occupies the window from
the moment it is granted until it *ends* plus one period: the server saw it somewhere in
between, so whatever the latency, no server-side window can hold more than the limit.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque

from .clock import Clock, TimerHandle
from .config import Rate

__all__ = ["FIRST", "RateBudget", "RetryBudget"]

FIRST = -math.inf
"""The priority that goes before every other (token refreshes)."""


class RateBudget:
    """Grants request slots within `rate` and `max_in_flight`, lowest priority value first,
    ties in arrival order.

    `throttle()` pauses every grant and halves the limit (once per pause, however many
    429s arrive during it); the limit then grows back by a tenth of `rate.limit` per quiet
    period, never above it. The concurrency limit lives here too, so that a granted request
    goes out at once: it cannot sit in a second queue while a 429 arrives.
    """

    def __init__(self, rate: Rate, clock: Clock, *, max_in_flight: int | None = None) -> None:
        self._rate = rate
        self._clock = clock
        self._max_in_flight = max_in_flight if max_in_flight is not None else math.inf
        self._limit = rate.limit
        self._last_adjust = clock.now()
        self._ended: deque[float] = deque()
        self._in_flight = 0
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._paused_until = -math.inf
        self._wakeup: TimerHandle | None = None
        self._wakeup_at = math.inf

    @property
    def rate(self) -> Rate:
        """The budget now in force (lower than configured after throttling)."""
        self._recover(self._clock.now())
        return Rate(self._limit, self._rate.period)

    def paused_for(self) -> float:
        """Seconds until a throttling pause ends (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock.now())

    @property
    def waiting(self) -> int:
        """How many requests are waiting for a slot."""
        return sum(not future.done() for _, _, future in self._waiters)

    def slot(self, priority: float = 0.0) -> _Slot:
        """`async with budget.slot(priority):` holds one request slot for the block."""
        return _Slot(self, priority)

    def _release(self) -> None:
        self._in_flight -= 1
        self._ended.append(self._clock.now())
        if self._waiters:  # nobody waiting: the next acquire's fast path tidies the window
            self._dispatch()

    def throttle(self, pause: float) -> Rate:
        """The server asked to slow down: pause all grants for `pause` seconds, halve the rate."""
        now = self._clock.now()
        if now >= self._paused_until:  # 429s already in flight in one episode halve once
            self._limit = max(1, self._limit // 2)
            self._last_adjust = now
        self._paused_until = max(self._paused_until, now + pause)
        self._dispatch()
        return Rate(self._limit, self._rate.period)

    async def _acquire(self, priority: float) -> None:
        if not self._waiters and self._free_now():
            self._in_flight += 1  # the common case when the budget is not short: no queue
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), future))
        self._dispatch()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted, then cancelled before use: the slot was never spent.
                self._in_flight -= 1
                self._dispatch()
            raise

    def _dispatch(self) -> None:
        now = self._tidy()
        while self._waiters:
            future = self._waiters[0][2]
            if future.done():
                heapq.heappop(self._waiters)
            elif now < self._paused_until:
                self._wake_at(self._paused_until)
                return
            elif self._in_flight >= self._max_in_flight:
                return  # the end of an in-flight request dispatches again
            elif len(self._ended) + self._in_flight >= self._limit:
                if self._ended:
                    self._wake_at(self._ended[0] + self._rate.period)
                return  # otherwise the end of an in-flight request dispatches again
            else:
                heapq.heappop(self._waiters)
                self._in_flight += 1
                future.set_result(None)

    def _free_now(self) -> bool:
        now = self._tidy()
        if now < self._paused_until or self._in_flight >= self._max_in_flight:
            return False
        return len(self._ended) + self._in_flight < self._limit

    def _tidy(self) -> float:
        """Let the limit recover and drop requests that left the window; return now."""
        now = self._clock.now()
        self._recover(now)
        while self._ended and self._ended[0] + self._rate.period <= now:
            self._ended.popleft()
        return now

    def _recover(self, now: float) -> None:
        if self._limit >= self._rate.limit:
            return
        periods = int((now - self._last_adjust) // self._rate.period)
        if periods > 0:
            step = max(1, math.ceil(self._rate.limit / 10))
            self._limit = min(self._rate.limit, self._limit + periods * step)
            self._last_adjust += periods * self._rate.period

    def _wake_at(self, when: float) -> None:
        if self._wakeup is not None and self._wakeup_at <= when:
            return
        if self._wakeup is not None:
            self._wakeup.cancel()
        self._wakeup_at = when
        self._wakeup = self._clock.call_later(when - self._clock.now(), self._on_wakeup)

    def _on_wakeup(self) -> None:
        self._wakeup, self._wakeup_at = None, math.inf
        self._dispatch()

    async def aclose(self) -> None:
        """Stop the internal timer (call when the run ends)."""
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None

    def __repr__(self) -> str:
        return (
            f"RateBudget(rate={self.rate}, in_window={len(self._ended)}, "
            f"in_flight={self._in_flight}, waiting={self.waiting})"
        )


class _Slot:
    """One request's place in a `RateBudget`, held for the `async with` block."""

    __slots__ = ("_budget", "_priority")

    def __init__(self, budget: RateBudget, priority: float) -> None:
        self._budget = budget
        self._priority = priority

    async def __aenter__(self) -> None:
        await self._budget._acquire(self._priority)

    async def __aexit__(self, *exc_info: object) -> None:
        self._budget._release()


class RetryBudget:
    """Early retries are at most `ratio` of first tries plus `floor` (Finagle/Envoy style).

    A token bucket: it starts with `floor` tokens, each first try adds `ratio` (never above
    `floor`), each early retry takes one. When it is empty a failed job simply waits for its
    next regular poll, so a failing API sees no more load than a healthy one.
    """

    def __init__(self, ratio: float = 0.2, floor: int = 10) -> None:
        self.ratio = ratio
        self.floor = floor
        self._tokens = float(floor)
        self.first_tries = 0
        self.retries = 0

    def first_try(self) -> None:
        """A request that is not an early retry was sent."""
        self.first_tries += 1
        self._tokens = min(float(self.floor), self._tokens + self.ratio)

    def try_spend(self) -> bool:
        """Take a token for an early retry; False when the budget is spent."""
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        self.retries += 1
        return True

    def __repr__(self) -> str:
        return (
            f"RetryBudget(tokens={self._tokens:.1f}, retries={self.retries}, "
            f"first_tries={self.first_tries})"
        )
