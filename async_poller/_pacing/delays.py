"""When to poll a job next: jittered exponential delays built on `backoff`'s wait generators.

`backoff` supplies the exponential sequence; the waiting itself goes through the injected
clock (its decorators would read the wall clock and sleep on their own).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import backoff

__all__ = ["DelayPolicy", "Pacing"]

_SMALLEST_STEP = 0.001  # backoff.expo with factor 0 would never grow


@dataclass(frozen=True, slots=True)
class DelayPolicy:
    """Delays between polls of one job, always within [min_delay, max_delay].

    Delays grow by `base` from `min_delay` to `max_delay`, each multiplied by a random factor
    in [1 - jitter, 1 + jitter] and then clamped, so jobs started together drift apart.
    """

    min_delay: float
    max_delay: float
    rng: random.Random
    jitter: float = 0.2
    base: float = 2.0

    def poll_delays(self) -> Iterator[float]:
        """Delays between successive polls while a job's status stays the same."""
        for raw in _expo(self.base, self.min_delay, self.max_delay):
            yield self._clamp(raw * self.rng.uniform(1 - self.jitter, 1 + self.jitter))

    def retry_delays(self, first: float = 2.0) -> Iterator[float]:
        """Delays after failed requests: "equal jitter" from `first`, capped at `max_delay`.

        Not clamped to `min_delay`: a failed request says nothing about the job, so the
        retry may come sooner than the next regular poll would.
        """
        for raw in _expo(self.base, min(first, self.max_delay), self.max_delay):
            yield raw / 2 + self.rng.uniform(0, raw / 2)

    def first_delay(self, index: int, burst: int, per_second: float) -> float:
        """When to poll the `index`-th job first: in input order (older submissions usually
        come first and are likelier to be done). The first `burst` go at once, as the
        budget allows; the rest one budget slot apart, each at a random moment of its
        slot, so they reach the budget about when it can serve them."""
        return max(0.0, index + self.rng.random() - burst) / per_second

    def unknown_delay(self, delay: float) -> float:
        """When to re-check after an UNKNOWN answer: about `delay`, jittered, within bounds."""
        return min(self.max_delay, delay * self.rng.uniform(1 - self.jitter, 1 + self.jitter))

    def _clamp(self, delay: float) -> float:
        return min(self.max_delay, max(self.min_delay, delay))


class Pacing:
    """One job's place in its delay sequences.

    The sequences start only when first needed, so the many jobs still waiting for their
    first poll in a large run cost no generator.
    """

    __slots__ = ("_policy", "_polls", "_retries")

    def __init__(self, policy: DelayPolicy) -> None:
        self._policy = policy
        self._polls: Iterator[float] | None = None
        self._retries: Iterator[float] | None = None

    def next_poll(self, *, restart: bool = False) -> float:
        """The delay to the next regular poll; `restart` goes back to `min_delay`."""
        if restart or self._polls is None:
            self._polls = self._policy.poll_delays()
        return next(self._polls)

    def next_retry(self) -> float:
        """The delay before retrying a failed poll."""
        if self._retries is None:
            self._retries = self._policy.retry_delays()
        return next(self._retries)

    def answered(self) -> None:
        """A poll got an answer: the next failure starts the retry delays over."""
        self._retries = None


def _expo(base: float, first: float, cap: float) -> Iterator[float]:
    generator = backoff.expo(base=base, factor=max(first, _SMALLEST_STEP), max_value=cap)
    next(generator)  # backoff's generators are primed with one bare `yield`
    return generator
