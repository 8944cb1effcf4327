"""The request budget: slots granted best-priority first, within a `Pacer` and a concurrency
limit.

The pacer decides *when* a request may leave (pacing, the sliding window, throttling; see
`pacer`); the budget decides *which* waiting request it is, and keeps the concurrency
limit, so that a granted request goes out at once: it cannot sit in a second queue while a
429 arrives. One dispatcher task asks the pacer on behalf of every waiter, so that a pacer
shared with other processes is asked once per request, not once per waiting job.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math

from ..clock import Clock, TimerHandle
from ..config import Rate
from .pacer import LocalPacer, Pacer

__all__ = ["FIRST", "RateBudget", "RetryBudget"]

FIRST = -math.inf
"""The priority that goes before every other (token refreshes)."""


class RateBudget:
    """Grants request slots within a pacer (by default one of its own for `rate` and
    `burst`) and `max_in_flight`, lowest priority value first, ties in arrival order."""

    def __init__(
        self,
        rate: Rate,
        clock: Clock,
        *,
        burst: int = 1,
        max_in_flight: int | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self._rate = rate
        self._clock = clock
        self._pacer = pacer if pacer is not None else LocalPacer(rate, clock, burst=burst)
        self._max_in_flight = max_in_flight if max_in_flight is not None else math.inf
        self._in_flight = 0
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._dispatcher: asyncio.Task[None] | None = None
        self._nudge: asyncio.Future[None] | None = None
        self._until_an_end = False  # the dispatcher waits for a request under way to end

    @property
    def per_second(self) -> float:
        """The pacing rate now in force, in requests per second."""
        return self._pacer.per_second()

    @property
    def rate(self) -> Rate:
        """The rate now in force, per configured period (lower than configured after
        throttling)."""
        return Rate(self.per_second * self._rate.period, self._rate.period)

    def paused_for(self) -> float:
        """Seconds until a throttling pause ends (0 when not paused)."""
        return self._pacer.paused_for()

    @property
    def waiting(self) -> int:
        """How many requests are waiting for a slot."""
        return sum(not future.done() for _, _, future in self._waiters)

    def slot(self, priority: float = 0.0) -> _Slot:
        """`async with budget.slot(priority):` holds one request slot for the block."""
        return _Slot(self, priority)

    def throttle(self, pause: float, *, sent_at: float) -> Rate:
        """The server refused a request sent at `sent_at`: pause all grants for `pause`
        seconds and lower the rate in force; return it."""
        self._pacer.throttle(pause, sent_ago=self._clock.now() - sent_at)
        return self.rate

    async def _acquire(self, priority: float) -> None:
        if not self._waiters and self._dispatcher is None and self._in_flight < self._max_in_flight:
            # The common case when the budget is not short: no queue. The slot is held while
            # the pacer is asked, as a shared pacer's answer may take a round trip.
            self._in_flight += 1
            try:
                passed = await self._pacer.try_pass() is None
            except BaseException:
                self._unhold()
                raise
            if passed:
                return
            self._unhold()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), future))
        if self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(used=False)  # granted, then cancelled before use
            raise

    def _release(self, *, used: bool = True) -> None:
        self._pacer.ended(used=used)
        self._unhold()

    def _unhold(self) -> None:
        """A slot in the concurrency limit is free again: wake a dispatcher waiting for it."""
        self._in_flight -= 1
        if self._until_an_end:
            self._wake()

    async def _dispatch(self) -> None:
        """Grant waiters, best first, as the concurrency limit and the pacer allow."""
        try:
            while self._head() is not None:
                if self._in_flight >= self._max_in_flight:
                    await self._doze(math.inf)
                    continue
                wait = await self._pacer.try_pass()
                if wait is not None:
                    await self._doze(wait)
                    continue
                head = self._head()  # the best waiter may have changed during the await
                if head is None:
                    self._pacer.ended(used=False)
                    break
                heapq.heappop(self._waiters)
                self._in_flight += 1
                head.set_result(None)
        finally:
            self._dispatcher = None

    def _head(self) -> asyncio.Future[None] | None:
        while self._waiters and self._waiters[0][2].done():
            heapq.heappop(self._waiters)
        return self._waiters[0][2] if self._waiters else None

    async def _doze(self, seconds: float) -> None:
        """Sleep `seconds` of clock time, or until a request ends if `seconds` is inf."""
        self._nudge = asyncio.get_running_loop().create_future()
        self._until_an_end = seconds == math.inf
        timer: TimerHandle | None = None
        if not self._until_an_end:
            timer = self._clock.call_later(seconds, self._wake)
        try:
            await self._nudge
        finally:
            if timer is not None:
                timer.cancel()
            self._nudge, self._until_an_end = None, False

    def _wake(self) -> None:
        if self._nudge is not None and not self._nudge.done():
            self._nudge.set_result(None)

    async def aclose(self) -> None:
        """Stop the dispatcher and hand back what the pacer holds (call when the run ends)."""
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        await self._pacer.aclose()

    def __repr__(self) -> str:
        return (
            f"RateBudget(rate={self.rate}, in_flight={self._in_flight}, "
            f"waiting={self.waiting}, pacer={self._pacer!r})"
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
