"""The shared request budget: requests paced evenly, at most N in any sliding window.

Two limits, both always in force:
- pacing (GCRA, the generic cell rate algorithm): one request per 1/rate seconds, with a
  tolerance of `burst - 1` intervals after an idle spell. Any server limiter, leaky bucket,
  token bucket or sliding window, sees a steady flow it can admit;
- a sliding-window log: a request occupies the window from the moment it is granted until
  it *ends* plus one period. The server saw it somewhere in between, so whatever the
  latency, no server-side window can hold more than the configured limit.

The pacing rate is an `AdaptiveRate`: every overload answer lowers it, and it recovers
smoothly. (aiolimiter's leaky bucket was not used: it lets up to twice the limit through in
one window after an idle spell, and has no notion of a rate that adapts.)
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque

from .adaptive import AdaptiveRate
from .clock import Clock, TimerHandle
from .config import Rate

__all__ = ["FIRST", "RateBudget", "RetryBudget"]

FIRST = -math.inf
"""The priority that goes before every other (token refreshes)."""

_EARLY = 1e-6
"""A timer may fire this much before its time (float rounding): close enough to grant."""


class RateBudget:
    """Grants request slots within `rate`, `burst` and `max_in_flight`, lowest priority
    value first, ties in arrival order.

    `throttle()` pauses every grant for the time the server asked and lowers the pacing
    rate (once per episode, however many refusals arrive from requests already under way).
    The concurrency limit lives here too, so that a granted request goes out at once: it
    cannot sit in a second queue while a 429 arrives.
    """

    def __init__(
        self,
        rate: Rate,
        clock: Clock,
        *,
        burst: int = 1,
        max_in_flight: int | None = None,
    ) -> None:
        self._rate = rate
        self._clock = clock
        self._burst = burst
        self._max_in_flight = max_in_flight if max_in_flight is not None else math.inf
        self._pace = AdaptiveRate(rate.per_second, recovery=rate.period)
        self._next_at = -math.inf  # GCRA's theoretical arrival time of the next request
        self._ended: deque[float] = deque()
        self._in_flight = 0
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._paused_until = -math.inf
        self._wakeup: TimerHandle | None = None
        self._wakeup_at = math.inf

    @property
    def per_second(self) -> float:
        """The pacing rate now in force, in requests per second."""
        return self._pace.at(self._clock.now())

    @property
    def rate(self) -> Rate:
        """The rate now in force, per configured period (lower than configured after
        throttling)."""
        return Rate(self.per_second * self._rate.period, self._rate.period)

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

    def throttle(self, pause: float, *, sent_at: float) -> Rate:
        """The server refused a request sent at `sent_at`: pause all grants for `pause`
        seconds and lower the rate in force; return it."""
        now = self._clock.now()
        self._paused_until = max(self._paused_until, now + pause)
        if self._pace.cut(now, sent_at=sent_at, resume_at=self._paused_until):
            # The next request leaves when the pause ends, and a whole new interval after
            # the refusal, so that a leaky bucket sees the gap it asked for.
            interval = 1 / self._pace.at(now)
            self._next_at = max(self._next_at, now + interval, self._paused_until)
        self._dispatch()
        return self.rate

    async def _acquire(self, priority: float) -> None:
        if not self._waiters and self._free_at(self._clock.now()) is None:
            self._grant()  # the common case when the budget is not short: no queue
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

    def _grant(self) -> None:
        now = self._clock.now()
        self._in_flight += 1
        self._next_at = max(self._next_at, now) + 1 / self._pace.at(now)

    def _dispatch(self) -> None:
        now = self._clock.now()
        while self._waiters:
            future = self._waiters[0][2]
            if future.done():
                heapq.heappop(self._waiters)
                continue
            free_at = self._free_at(now)
            if free_at is not None:
                if free_at < math.inf:
                    self._wake_at(free_at)
                return  # at infinity: the end of an in-flight request dispatches again
            heapq.heappop(self._waiters)
            self._grant()
            future.set_result(None)

    def _free_at(self, now: float) -> float | None:
        """None when a request may go at `now`; otherwise the earliest time one may (inf:
        when a request in flight ends)."""
        while self._ended and self._ended[0] + self._rate.period <= now:
            self._ended.popleft()
        if now < self._paused_until:
            return self._paused_until
        if self._in_flight >= self._max_in_flight:
            return math.inf
        if len(self._ended) + self._in_flight >= self._rate.limit:
            return self._ended[0] + self._rate.period if self._ended else math.inf
        paced_at = self._next_at - (self._burst - 1) / self._pace.at(now)
        return paced_at if now < paced_at - _EARLY else None

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
            f"RateBudget(rate={self.rate}, burst={self._burst}, in_window={len(self._ended)}, "
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
