"""The API's rate limiters (pure): a sliding-window log, and a token bucket run as GCRA.

`limiter_for("window" | "bucket:B", limit, window)` builds the one a `SimulatorConfig` names.
Both answer `admit(now)` the same way, so the app does not care which one it runs.
"""

from __future__ import annotations

import math
import re
from collections import deque
from typing import Final, Protocol

from ..errors import ConfigError

__all__ = [
    "RateLimiter",
    "SlidingWindowLimiter",
    "TokenBucketLimiter",
    "limiter_for",
    "normalise_limiter",
]

_BUCKET: Final = re.compile(r"bucket:([0-9]{1,9})")
_HINT: Final = (
    "HINT: write window (a sliding window, the default) or bucket:B (a token bucket holding "
    "B requests, refilled at the rate limit), e.g. bucket:1 for nginx limit_req with no burst"
)


class RateLimiter(Protocol):
    """Decides, request by request, whether the API serves it or refuses it."""

    def admit(self, now: float) -> int | None:
        """Admit a request arriving at `now` (None), or refuse it: the whole seconds (>= 1)
        until a request would be admitted, for Retry-After. A refusal changes no state."""
        ...


class SlidingWindowLimiter:
    """Admits at most `limit` requests in any window of `window` seconds.

    A request at `t` shares a window with the admitted requests after `t - window`. Rejected
    requests are not logged, so a client hammering at the limit is not locked out for longer.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._admitted: deque[float] = deque()

    def admit(self, now: float) -> int | None:
        """Admit a request arriving at `now` (None), or return its whole-second Retry-After."""
        while self._admitted and self._admitted[0] <= now - self.window:
            self._admitted.popleft()
        if len(self._admitted) < self.limit:
            self._admitted.append(now)
            return None
        return max(1, math.ceil(self._admitted[0] + self.window - now))

    def __repr__(self) -> str:
        return f"SlidingWindowLimiter({len(self._admitted)}/{self.limit} per {self.window:g}s)"


class TokenBucketLimiter:
    """A bucket of `capacity` tokens, refilled with `limit` tokens per `window` seconds.

    A request takes one token, or is refused when none is left. Run as GCRA: the only state
    is the theoretical arrival time `tat` of the next request at the sustained rate, and a
    request is admitted when it is at most `(capacity - 1)` intervals early. Capacity 1 is
    nginx `limit_req` without `burst` (a request closer than `window / limit` to the previous
    admitted one is refused); capacity B is `burst=B-1 nodelay`.
    """

    def __init__(self, capacity: int, limit: int, window: float) -> None:
        self.capacity = capacity
        self.limit = limit
        self.window = window
        self.interval = window / limit
        """Seconds per token."""
        self._tolerance = (capacity - 1) * self.interval
        self._tat = -math.inf

    def admit(self, now: float) -> int | None:
        """Admit a request arriving at `now` (None), or return its whole-second Retry-After."""
        tat = max(self._tat, now)
        # Admitted from `tat - tolerance` on: then at least one token is back in the bucket.
        early = tat - self._tolerance - now
        if early > 0:
            return math.ceil(early)  # at least 1, as early > 0
        self._tat = tat + self.interval
        return None

    def __repr__(self) -> str:
        return (
            f"TokenBucketLimiter(capacity={self.capacity}, {self.limit} per {self.window:g}s, "
            f"tat={self._tat:g})"
        )


def normalise_limiter(spec: str) -> str:
    """`spec` in canonical form (`window` or `bucket:B`, B >= 1); ConfigError otherwise."""
    if spec == "window":
        return spec
    if (match := _BUCKET.fullmatch(spec)) and int(match.group(1)) >= 1:
        return f"bucket:{int(match.group(1))}"
    raise ConfigError(f"invalid limiter {spec!r}\n{_HINT}")


def limiter_for(spec: str, limit: int, window: float) -> RateLimiter:
    """The limiter `spec` names, admitting `limit` requests per `window` seconds."""
    spec = normalise_limiter(spec)
    if spec == "window":
        return SlidingWindowLimiter(limit, window)
    return TokenBucketLimiter(int(spec.removeprefix("bucket:")), limit, window)
