"""One run: a coroutine per job within the shared budgets, from its first turn to the end.

`Run.execute` gives every unfinished job its first turn and polls each until it is final,
then, whatever ended the run (see `end.RunEnd`), times out what is left and emits the
summary. `Turns` decides when each job polls, `Naps` holds the jobs between polls, and the
`Ledger` writes down what came of each answer.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext

from .._lucidity.client import StatusChecker
from .._lucidity.transport import ThrottleListener
from .._pacing.budget import RateBudget, RetryBudget
from .._pacing.delays import DelayPolicy
from .._pacing.tenant import open_shared_pacer
from .._state.store import StateStore
from ..clock import Clock
from ..config import Config, shown_store
from ..errors import AsyncPollerError
from ..events import Event
from ..ids import JobIds
from ..logs import get_logger
from ..outcome import FinalStatus
from .control import Interrupt, Snapshot, TickListener
from .end import RunEnd
from .job import Ending, GiveUpLimits, JobTracker, Wait
from .ledger import Ledger
from .naps import Naps
from .turns import Turns

__all__ = ["Connect", "Run"]

_log = get_logger()

Connect = Callable[
    [Config, Clock, RateBudget, ThrottleListener], AbstractAsyncContextManager[StatusChecker]
]
"""Opens the way to the API: `client.connect` for real HTTP, a fake in the engine tests."""


class Run:
    """The state of one run; `execute` drives it, and what happened goes to `emit`."""

    def __init__(
        self,
        job_ids: JobIds,
        config: Config,
        clock: Clock,
        emit: Callable[[Event], None],
        *,
        store: StateStore | None = None,
        interrupt: Interrupt | None = None,
        ticks: tuple[TickListener, float] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.ledger = Ledger(clock, emit, store)
        limits = GiveUpLimits(config.max_unknown, config.max_not_found, config.bad_response_window)
        self.jobs = [JobTracker(job_id, limits) for job_id in job_ids.ids]
        self._interrupt = interrupt or Interrupt()
        self._ticks = ticks
        self._budget = RateBudget(
            config.rate,
            clock,
            burst=config.burst,
            max_in_flight=config.concurrency,
            pacer=open_shared_pacer(config, clock, self._budget_store_failed),
        )
        policy = DelayPolicy(config.min_delay, config.max_delay, random.Random(config.seed))
        self._turns = Turns(config, clock, self._budget, policy)
        self._retry_budget = RetryBudget()
        self._naps = Naps(clock)
        self._tasks: set[asyncio.Task[None]] = set()
        self.ledger.resume(self.jobs)
        self._end = RunEnd(clock, config.deadline, self.unfinished(), self._interrupt)

    def _budget_store_failed(self, reason: str) -> None:
        store = shown_store(str(self.config.budget_store))
        warning = self.ledger.warning("budget_store_unavailable", reason, {"budget_store": store})
        self.ledger.emit(warning)

    def unfinished(self) -> int:
        return sum(not job.done for job in self.jobs)

    def stop(self, error: AsyncPollerError) -> None:
        """End the run because of `error` (the first one is kept)."""
        self._end.abort(error)

    async def execute(self, connect: Connect) -> None:
        """Poll every job, then emit the summary (the last event)."""
        outcomes: Mapping[str, int] = {}
        try:
            async with connect(
                self.config, self.clock, self._budget, self.ledger.throttled
            ) as client:
                self._schedule_first_polls(client)
                if self._ticks is not None:
                    self._spawn(self._tick(client, *self._ticks))
                self._schedule_sweep()
                try:
                    await self._end.wait()
                finally:
                    self._naps.close()  # no job starts any more
                    for task in self._tasks:
                        task.cancel()
                    await asyncio.gather(*self._tasks, return_exceptions=True)
                    await self._budget.aclose()
                    # Live, not a copy: a token refresh cancelled as the client closes counts.
                    outcomes = client.outcomes
        except AsyncPollerError as error:  # e.g. the state file failed mid-run
            self.stop(error)
        if self._end.error is None and not self.config.once and not self._end.interrupted:
            self._time_out_the_rest()
        counts = self.ledger.final_counts(self.jobs)
        summary = self.ledger.summary(
            self.jobs,
            requests=sum(outcomes.values()),
            retries=self._retry_budget.retries,
            rate=self._budget.rate,
            exit_code=self._end.exit_code(counts),
        )
        if self.config.metrics_file is not None:
            from .metrics import write_metrics_file  # prometheus_client, only when asked for

            write_metrics_file(self.config.metrics_file, summary, outcomes, self.clock.wall())
        self.ledger.emit(summary)

    def _time_out_the_rest(self) -> None:
        store = self.ledger.store
        with store.batch() if store is not None else nullcontext():
            for job in self.jobs:
                if not job.done:
                    self.ledger.finish(job, Ending(FinalStatus.TIMED_OUT, job.last_error))

    def _schedule_first_polls(self, client: StatusChecker) -> None:
        """Give each unfinished job its first poll. Until then a job is a nap in a heap,
        not a task: 100,000 jobs waiting for their turn cost little."""
        waiting = [job for job in self.jobs if not job.done]
        for job, (delay, priority) in zip(waiting, self._turns.first(len(waiting)), strict=True):
            turn = self._naps.nap(delay, stale_since=-math.inf)
            turn.add_done_callback(functools.partial(self._start, job, client, priority))

    def _schedule_sweep(self) -> None:
        """The final sweep begins as long before the deadline as polling every unfinished
        job once takes at the configured rate, but within the last quarter."""
        per_second = self.config.rate.per_second
        window = min(self.unfinished() / per_second, self.config.deadline / 4)
        delay = self.config.deadline - window - self.ledger.elapsed()
        self._naps.schedule_sweep(delay, capacity=math.ceil(window * per_second))

    def _start(
        self, job: JobTracker, client: StatusChecker, priority: float, turn: asyncio.Future[None]
    ) -> None:
        if not turn.cancelled():
            self._spawn(self._track(job, client, priority))

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _track(self, job: JobTracker, client: StatusChecker, priority: float) -> None:
        """Poll `job` from its first turn until it is final (or, under --once, answered)."""
        try:
            pacing = None
            early_retry = False
            asked = -math.inf
            while True:
                if not early_retry:
                    self._retry_budget.first_try()
                if self._naps.sweeping:  # in the final sweep, the stalest first
                    priority = asked
                asked = self.clock.now()
                answer = await client.check(job.id, priority=priority)
                step = job.observe(answer, self.clock.now())
                self.ledger.record(job, answer, step)
                if job.done or (self.config.once and step.wait not in (Wait.RETRY, Wait.NOW)):
                    break
                pacing = pacing or self._turns.pacing()
                if step.wait is not Wait.RETRY:
                    pacing.answered()
                # A failed poll is retried early only while the retry budget lasts;
                # otherwise the job just waits for its next regular poll.
                early_retry = step.wait is Wait.RETRY and self._retry_budget.try_spend()
                delay, priority = self._turns.next(
                    step.wait, pacing, early_retry=early_retry, unfinished=self._end.unsettled
                )
                await self._naps.nap(delay, stale_since=asked)
        except AsyncPollerError as error:
            self.stop(error)
            return
        except Exception as error:  # a bug must not lose the job silently
            _log.exception("internal_error", job_id=job.id)
            reason = f"internal error: {type(error).__name__}"
            self.ledger.finish(job, Ending(FinalStatus.ERROR, reason))
        self._end.settle()

    async def _tick(self, client: StatusChecker, listener: TickListener, every: float) -> None:
        """Call `listener` at each multiple of `every` since the run started: a late tick
        (a slow start, a busy loop) delays only itself, never the ones after it, and one
        late by whole intervals skips them."""
        count = 0
        while True:
            count += 1
            await self.clock.sleep(count * every - self.ledger.elapsed())
            # The multiples already passed (the epsilon: 0.7 / 0.1 is 6.999...).
            count = max(count, math.floor(self.ledger.elapsed() / every + 1e-6))
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
