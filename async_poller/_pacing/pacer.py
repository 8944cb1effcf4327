"""When may the next request leave: the pacing rules, and the pacer of a budget owned alone.

Two limits, both always in force:
- pacing (GCRA, the generic cell rate algorithm): one request per 1/rate seconds, with a
  tolerance of `burst - 1` intervals after an idle spell. Any server limiter, leaky bucket,
  token bucket or sliding window, sees a steady flow it can admit;
- a sliding-window log: a request occupies the window from the moment it leaves until it
  *ends* plus one period. The server saw it somewhere in between, so whatever the latency,
  no server-side window can hold more than the configured limit.

The pacing rate is an `AdaptiveRate`: every overload answer lowers it, and it recovers
smoothly. `decide` is the rule itself, pure; `LocalPacer` keeps its state in memory, and the
shared pacers (`tenant`) keep the same state where every process of a tenant sees it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from ..clock import Clock
from ..config import Rate
from .adaptive import AdaptiveRate

__all__ = ["LocalPacer", "PaceState", "Pacer", "decide"]

EARLY = 1e-6
"""A timer may fire this much before its time (float rounding): close enough to go."""


class Pacer(Protocol):
    """Decides when the next request may leave, for everyone who shares the budget."""

    def per_second(self) -> float:
        """The pacing rate in force, in requests per second."""
        ...

    def paused_for(self) -> float:
        """Seconds until a throttling pause ends (0 when not paused)."""
        ...

    async def try_pass(self) -> float | None:
        """Let one request leave now and count it (None), or say how many seconds to wait
        before asking again (infinity: until a request under way ends)."""
        ...

    def ended(self, *, used: bool = True) -> None:
        """A request that passed has ended (`used`), or was never sent after all."""
        ...

    def throttle(self, pause: float, *, sent_ago: float) -> None:
        """The server refused a request sent `sent_ago` seconds ago, asking for `pause`."""
        ...

    async def aclose(self) -> None:
        """Hand back whatever the pacer holds (the run is over)."""
        ...


@dataclass(slots=True)
class PaceState:
    """What pacing remembers between requests: the theoretical arrival time of the next
    request (GCRA), a pause the server asked for, and the adaptive rate."""

    next_at: float
    paused_until: float
    pace: AdaptiveRate

    @classmethod
    def fresh(cls, rate: Rate) -> PaceState:
        """Nothing sent yet, nothing refused: the configured rate."""
        return cls(-math.inf, -math.inf, AdaptiveRate(rate.per_second, recovery=rate.period))

    def passed(self, now: float) -> None:
        """A request left at `now`: the next may leave one interval later."""
        self.next_at = max(self.next_at, now) + 1 / self.pace.at(now)

    def throttle(self, now: float, pause: float, sent_at: float) -> None:
        """Pause everyone for `pause` and cut the rate, once per episode."""
        self.paused_until = max(self.paused_until, now + pause)
        if self.pace.cut(now, sent_at=sent_at, resume_at=self.paused_until):
            # The next request leaves when the pause ends, and a whole new interval after
            # the refusal, so that a leaky bucket sees the gap it asked for.
            interval = 1 / self.pace.at(now)
            self.next_at = max(self.next_at, now + interval, self.paused_until)


def decide(
    state: PaceState, now: float, *, burst: int, limit: float, in_window: int, oldest: float
) -> float | None:
    """None when a request may leave at `now`; otherwise the earliest time one may (inf:
    when a request under way ends). `in_window` requests occupy the window; `oldest` is
    when the oldest of them stops occupying it (inf while it is under way)."""
    if now < state.paused_until:
        return state.paused_until
    if in_window >= limit:
        return oldest
    paced_at = state.next_at - (burst - 1) / state.pace.at(now)
    return paced_at if now < paced_at - EARLY else None


class LocalPacer:
    """The pacer of a budget this process owns alone, in memory."""

    def __init__(self, rate: Rate, clock: Clock, *, burst: int = 1) -> None:
        self._rate = rate
        self._clock = clock
        self._burst = burst
        self._state = PaceState.fresh(rate)
        self._ended: deque[float] = deque()  # when the requests in the window ended
        self._in_flight = 0

    def per_second(self) -> float:
        return self._state.pace.at(self._clock.now())

    def paused_for(self) -> float:
        return max(0.0, self._state.paused_until - self._clock.now())

    async def try_pass(self) -> float | None:
        now = self._clock.now()
        while self._ended and self._ended[0] + self._rate.period <= now:
            self._ended.popleft()
        oldest = self._ended[0] + self._rate.period if self._ended else math.inf
        in_window = len(self._ended) + self._in_flight
        at = decide(
            self._state, now, burst=self._burst, limit=self._rate.limit,
            in_window=in_window, oldest=oldest,
        )  # fmt: skip
        if at is None:
            self._in_flight += 1
            self._state.passed(now)
            return None
        return at - now

    def ended(self, *, used: bool = True) -> None:
        self._in_flight -= 1
        if used:
            self._ended.append(self._clock.now())

    def throttle(self, pause: float, *, sent_ago: float) -> None:
        now = self._clock.now()
        self._state.throttle(now, pause, now - sent_ago)

    async def aclose(self) -> None:
        """Nothing to hand back: the state dies with the process."""

    def __repr__(self) -> str:
        return (
            f"LocalPacer(rate={self._rate}, in_window={len(self._ended) + self._in_flight}, "
            f"paused_for={self.paused_for():g})"
        )
