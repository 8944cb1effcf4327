"""The API's rate limit: a sliding-window log over every API request."""

from __future__ import annotations

import math
from collections import deque

__all__ = ["SlidingWindowLimiter"]


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
