"""When a job polls next, and its place in the budget's queue when it then asks for a slot.

Priorities are clock times: the budget serves the smallest first. A job's first poll comes
in input order, at the budget's pace; after that, backoff decides while the budget is short,
and round robin at the budget's full pace while it has room.
"""

from __future__ import annotations

from collections.abc import Iterator

from .._pacing.budget import RateBudget
from .._pacing.delays import DelayPolicy, Pacing
from ..clock import Clock
from ..config import Config
from .job import Wait

__all__ = ["Turns"]


class Turns:
    """Decides every job's naps and priorities within one run."""

    def __init__(
        self, config: Config, clock: Clock, budget: RateBudget, policy: DelayPolicy
    ) -> None:
        self._config = config
        self._clock = clock
        self._budget = budget
        self._policy = policy

    def pacing(self) -> Pacing:
        """A job's own place in the delay sequences, made when it first needs one."""
        return Pacing(self._policy)

    def first(self, jobs: int) -> Iterator[tuple[float, float]]:
        """(nap, priority) of each job's first poll, in input order (older submissions
        usually come first, and are likelier to be done), at the budget's pace."""
        rate = self._config.rate
        round_s = jobs / rate.per_second
        for index in range(jobs):
            delay = self._policy.first_delay(index, self._config.burst, rate.per_second)
            # A round earlier than its due time: the first round goes before any re-poll.
            yield delay, self._clock.now() + delay - round_s

    def next(
        self, wait: Wait, pacing: Pacing, *, early_retry: bool, unfinished: int
    ) -> tuple[float, float]:
        """(nap, priority) after an answer, with `unfinished` jobs still to poll.

        When the budget is short (one round of every unfinished job at the rate in force
        takes longer than --max-delay), backoff decides: the job naps its growing delay,
        and the earliest overdue goes first. Otherwise the budget has room to poll every
        job once a round: the job naps only --min-delay, then queues behind those asked
        before it. With few jobs that polls each every --min-delay; with more, it is round
        robin at the budget's full pace, so no job waits much longer than a round.
        """
        delay = self._delay(wait, pacing, early_retry)
        now = self._clock.now()
        if self._config.thrifty or wait not in (Wait.POLL, Wait.RESTART):
            return delay, now + delay
        if unfinished / self._budget.per_second >= self._config.max_delay:
            return delay, now + delay
        return self._config.min_delay, now  # the last answer: the stalest goes first

    def _delay(self, wait: Wait, pacing: Pacing, early_retry: bool) -> float:
        if wait is Wait.RETRY:
            return pacing.next_retry() if early_retry else pacing.next_poll()
        if wait is Wait.RECHECK:
            return self._policy.unknown_delay(self._config.unknown_delay)
        if wait is Wait.NOW:
            return 0.0  # the shared budget holds everyone back until the pause ends
        return pacing.next_poll(restart=wait is Wait.RESTART)
