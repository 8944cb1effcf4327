"""One run: a coroutine per job, the shared budgets, the deadline, the sweep and the end.

`Run.execute` starts a task per unfinished job and waits for the first of: every job final,
the deadline, an interrupt, or a fatal error. Whatever ends it, the summary is emitted last.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass

import structlog

from .._lucidity.client import StatusChecker
from .._lucidity.transport import ThrottleListener
from .._pacing.budget import RateBudget, RetryBudget
from .._pacing.delays import DelayPolicy, Pacing
from .._pacing.tenant import open_shared_pacer
from .._state.store import StateStore
from ..clock import Clock
from ..config import Config, shown_store
from ..errors import AsyncPollerError, AuthError, FatalResponseError
from ..events import RunWarning, Summary
from ..ids import JobIds
from ..outcome import ExitCode, FinalStatus, exit_code_for
from .job import Ending, GiveUpLimits, JobTracker, Wait
from .ledger import Ledger
from .naps import Naps

__all__ = ["Connect", "Interrupt", "Run", "Snapshot", "TickListener"]

_log = structlog.get_logger("async_poller")

Connect = Callable[
    [Config, Clock, RateBudget, ThrottleListener], AbstractAsyncContextManager[StatusChecker]
]
"""Opens the way to the API: `client.connect` for real HTTP, a fake in scheduler tests."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The run at a glance, for progress displays and heartbeats."""

    elapsed_s: float
    deadline_in_s: float
    total: int
    counts: Mapping[str, int]
    """Jobs final so far, by final status."""
    pending: int
    requests: int
    rate: str
    """The request budget in force (lower than configured after throttling)."""
    paused_for_s: float
    """Seconds until a throttling pause ends; 0 when not throttled."""
    waiting: int
    """Requests waiting for a slot in the budget."""


TickListener = Callable[[Snapshot], None]


class Interrupt:
    """Stops a running `poll_jobs` from outside, e.g. from a signal handler.

    No new request starts, requests in flight are abandoned, unfinished jobs count as
    `pending`, and the summary carries `exit_code`.
    """

    def __init__(self) -> None:
        self.exit_code: int | None = None
        self.requested = asyncio.Event()

    def stop(self, exit_code: int) -> None:
        """Ask the run to stop (the first call's exit code wins)."""
        if self.exit_code is None:
            self.exit_code = exit_code
        self.requested.set()


class Run:
    """The state of one run; `execute` drives it, `ledger.events` carries what happened."""

    def __init__(
        self,
        job_ids: JobIds,
        config: Config,
        clock: Clock,
        *,
        store: StateStore | None = None,
        interrupt: Interrupt | None = None,
        ticks: tuple[TickListener, float] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.ledger = Ledger(clock, store)
        limits = GiveUpLimits(config.max_unknown, config.max_not_found, config.bad_response_window)
        self.jobs = [JobTracker(job_id, limits) for job_id in job_ids.ids]
        self._interrupt = interrupt or Interrupt()
        self._ticks = ticks
        self._policy = DelayPolicy(config.min_delay, config.max_delay, random.Random(config.seed))
        self._budget = RateBudget(
            config.rate,
            clock,
            burst=config.burst,
            max_in_flight=config.concurrency,
            pacer=open_shared_pacer(config, clock, self._budget_store_failed),
        )
        self._retry_budget = RetryBudget()
        self._sweep = Naps(clock)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = asyncio.Event()
        self._abort: AsyncPollerError | None = None
        self.ledger.resume(self.jobs)
        self._outstanding = self.unfinished()

    def _budget_store_failed(self, reason: str) -> None:
        store = shown_store(str(self.config.budget_store))
        self.ledger.emit(
            RunWarning(
                ts=self.ledger.timestamp(),
                code="budget_store_unavailable",
                message=reason,
                details={"budget_store": store},
            )
        )

    def unfinished(self) -> int:
        return sum(not job.done for job in self.jobs)

    async def execute(self, connect: Connect) -> None:
        """Poll every job, then emit the summary and close the event stream."""
        outcomes: Mapping[str, int] = {}
        try:
            async with connect(
                self.config, self.clock, self._budget, self.ledger.throttled
            ) as client:
                self._schedule_first_polls(client)
                if self._ticks is not None:
                    self._spawn(self._tick(client, *self._ticks))
                window = self._sweep_window()
                capacity = math.ceil(window * self.config.rate.per_second)
                delay = self.config.deadline - window - self.ledger.elapsed()
                self._sweep.schedule(delay, capacity)
                try:
                    await self._wait_for_end()
                finally:
                    self._sweep.close()  # no job starts any more
                    for task in self._tasks:
                        task.cancel()
                    await asyncio.gather(*self._tasks, return_exceptions=True)
                    await self._budget.aclose()
                    # Live, not a copy: a token refresh cancelled as the client closes counts.
                    outcomes = client.outcomes
        except AsyncPollerError as error:  # e.g. the state file failed mid-run
            self.stop(error)
        if self._abort is None and not self.config.once and not self._interrupt.requested.is_set():
            store = self.ledger.store
            with store.batch() if store is not None else nullcontext():
                for job in self.jobs:
                    if not job.done:
                        self.ledger.finish(job, Ending(FinalStatus.TIMED_OUT, job.last_error))
        summary = self.ledger.summary(
            self.jobs,
            requests=sum(outcomes.values()),
            retries=self._retry_budget.retries,
            rate=self._budget.rate,
            exit_code=self._exit_code(),
        )
        if self.config.metrics_file is not None:
            self._write_metrics(summary, dict(outcomes))
        self.ledger.emit(summary)
        self.ledger.events.put_nowait(None)

    def _schedule_first_polls(self, client: StatusChecker) -> None:
        """Give each unfinished job its first poll: in input order (older submissions
        usually come first, and are likelier to be done), at the budget's pace. Until
        then a job is a nap in a heap, not a task: 100,000 jobs waiting for their turn
        cost little."""
        waiting = [job for job in self.jobs if not job.done]
        rate = self.config.rate
        round_s = len(waiting) / rate.per_second
        for index, job in enumerate(waiting):
            delay = self._policy.first_delay(index, self.config.burst, rate.per_second)
            # A round earlier than its due time: the first round goes before any re-poll.
            priority = self.clock.now() + delay - round_s
            turn = self._sweep.nap(delay, stale_since=-math.inf)
            turn.add_done_callback(functools.partial(self._start, job, client, priority))

    def _start(
        self, job: JobTracker, client: StatusChecker, priority: float, turn: asyncio.Future[None]
    ) -> None:
        if not turn.cancelled():
            self._spawn(self._track(job, client, priority))

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _exit_code(self) -> int:
        if self._interrupt.exit_code is not None:
            return self._interrupt.exit_code
        if isinstance(self._abort, AuthError):
            return ExitCode.AUTH
        if isinstance(self._abort, FatalResponseError):
            return ExitCode.UNTRUSTED
        if self._abort is not None:
            return ExitCode.INCOMPLETE
        return exit_code_for(self.ledger.final_counts(self.jobs))

    def stop(self, error: AsyncPollerError) -> None:
        """End the run because of `error` (the first one is kept)."""
        if self._abort is None:
            self._abort = error
            _log.error("run_aborted", reason=str(error))
        self._stopped.set()

    def _settle(self) -> None:
        self._outstanding -= 1
        if self._outstanding <= 0:
            self._stopped.set()

    async def _wait_for_end(self) -> None:
        if self._outstanding == 0:
            return
        ends = {
            asyncio.create_task(self.clock.sleep(self.config.deadline)),
            asyncio.create_task(self._stopped.wait()),
            asyncio.create_task(self._interrupt.requested.wait()),
        }
        try:
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for end in ends:
                end.cancel()

    async def _track(self, job: JobTracker, client: StatusChecker, priority: float) -> None:
        """Poll `job` from its first turn until it is final (or, under --once, answered)."""
        try:
            pacing = None
            early_retry = False
            asked = -math.inf
            while True:
                if not early_retry:
                    self._retry_budget.first_try()
                if self._sweep.started:  # in the final sweep, the stalest first
                    priority = asked
                asked = self.clock.now()
                answer = await client.check(job.id, priority=priority)
                step = job.observe(answer, self.clock.now())
                self.ledger.record(job, answer, step)
                if job.done or (self.config.once and step.wait not in (Wait.RETRY, Wait.NOW)):
                    break
                pacing = pacing or Pacing(self._policy)
                if step.wait is not Wait.RETRY:
                    pacing.answered()
                # A failed poll is retried early only while the retry budget lasts;
                # otherwise the job just waits for its next regular poll.
                early_retry = step.wait is Wait.RETRY and self._retry_budget.try_spend()
                delay, priority = self._next_turn(step.wait, pacing, early_retry)
                await self._sweep.nap(delay, stale_since=asked)
        except AsyncPollerError as error:
            self.stop(error)
            return
        except Exception as error:  # a bug must not lose the job silently
            _log.exception("internal_error", job_id=job.id)
            reason = f"internal error: {type(error).__name__}"
            self.ledger.finish(job, Ending(FinalStatus.ERROR, reason))
        self._settle()

    def _next_turn(self, wait: Wait, pacing: Pacing, early_retry: bool) -> tuple[float, float]:
        """How long the job naps, and its priority when it then asks for a slot.

        When the budget is short (one round of every unfinished job at the rate in force
        takes longer than --max-delay), backoff decides: the job naps its growing delay,
        and the earliest overdue goes first. Otherwise the budget has room to poll every
        job once a round: the job naps only --min-delay, then queues behind those asked
        before it. With few jobs that polls each every --min-delay; with more, it is round
        robin at the budget's full pace, so no job waits much longer than a round.
        """
        delay = self._delay(wait, pacing, early_retry)
        now = self.clock.now()
        if self.config.thrifty or wait not in (Wait.POLL, Wait.RESTART):
            return delay, now + delay
        if self._outstanding / self._budget.per_second >= self.config.max_delay:
            return delay, now + delay
        return self.config.min_delay, now  # the last answer: the stalest goes first

    def _delay(self, wait: Wait, pacing: Pacing, early_retry: bool) -> float:
        if wait is Wait.RETRY:
            return pacing.next_retry() if early_retry else pacing.next_poll()
        if wait is Wait.RECHECK:
            return self._policy.unknown_delay(self.config.unknown_delay)
        if wait is Wait.NOW:
            return 0.0  # the shared budget holds everyone back until the pause ends
        return pacing.next_poll(restart=wait is Wait.RESTART)

    def _sweep_window(self) -> float:
        """How long before the deadline the final sweep begins: as long as polling every
        unfinished job once takes at the configured rate, but within the last quarter."""
        return min(self.unfinished() / self.config.rate.per_second, self.config.deadline / 4)

    async def _tick(self, client: StatusChecker, listener: TickListener, every: float) -> None:
        while True:
            await self.clock.sleep(every)
            try:
                listener(self.snapshot(client))
            except Exception:  # a broken display must not silently stop reporting
                _log.exception("tick_listener_failed")

    def snapshot(self, client: StatusChecker) -> Snapshot:
        """Where the run stands now."""
        elapsed = self.ledger.elapsed()
        return Snapshot(
            elapsed_s=elapsed,
            deadline_in_s=max(0.0, self.config.deadline - elapsed),
            total=len(self.jobs),
            counts=dict(self.ledger.counts),
            pending=self.unfinished(),
            requests=sum(client.outcomes.values()),
            rate=str(self._budget.rate),
            paused_for_s=round(self._budget.paused_for(), 3),
            waiting=self._budget.waiting,
        )

    def _write_metrics(self, summary: Summary, outcomes: dict[str, int]) -> None:
        from .metrics import write_metrics  # prometheus_client, only when asked for

        assert self.config.metrics_file is not None
        try:
            write_metrics(
                self.config.metrics_file,
                summary,
                requests_by_outcome=outcomes,
                now=self.clock.wall(),
            )
        except OSError as error:
            path = str(self.config.metrics_file)
            _log.error("metrics_not_written", path=path, reason=error.strerror)
