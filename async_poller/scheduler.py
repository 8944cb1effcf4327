"""Polling every job to the end: one coroutine per job under shared limits and one deadline.

`poll_jobs` is the library's entry point and the CLI's engine: an async iterator of events
that starts with `start`, ends with `summary`, and gives every job exactly one `result`
unless the run is cut short. With a state file, jobs final in earlier runs are counted but
not polled, and a result counts as written once the consumer asks for the next event.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass

import structlog

from .budget import RateBudget, RetryBudget
from .client import StatusChecker, connect
from .clock import Clock, SystemClock, rfc3339
from .config import Config, Rate
from .errors import AuthError, PollerError
from .events import Event, InvalidInput, PollError, Result, Start, Summary, Throttled, Transition
from .events import event_id as make_event_id
from .ids import MAX_ID, JobIds
from .job import Ending, GiveUpLimits, JobTracker, Step, Wait
from .outcome import ExitCode, FinalStatus, exit_code_for
from .policy import DelayPolicy
from .responses import Answer, JobState
from .state import StateStore
from .transport import ThrottleListener

__all__ = ["Connect", "Interrupt", "Snapshot", "TickListener", "poll_jobs", "stream_events"]

_log = structlog.get_logger("async_poller")

Connect = Callable[
    [Config, Clock, RateBudget, ThrottleListener], AbstractAsyncContextManager[StatusChecker]
]
"""Opens the way to the API: `client.connect` for real HTTP, a fake in scheduler tests."""

SPREAD_PER_JOB = 0.01
"""First polls are spread over 10 ms per job (at most `min_delay`), so a large batch does
not fire at once."""


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


async def poll_jobs(
    ids: Iterable[int] | JobIds,
    config: Config,
    *,
    clock: Clock | None = None,
    interrupt: Interrupt | None = None,
    on_tick: TickListener | None = None,
    tick_s: float = 1.0,
) -> AsyncGenerator[Event, None]:
    """Poll every job in `ids` until it is final or `config.deadline` passes.

    Yields `start`, then `invalid_input` for skipped lines (when `ids` is a `JobIds`), then
    `transition`, `result`, `poll_error` and `throttled` as they happen, and `summary` last.
    Leaving the loop early cancels the run cleanly. Raises `StateLocked` or `StateError`
    before `start` when `config.state_file` cannot be used. `interrupt` stops the run from
    outside; `on_tick` gets a `Snapshot` every `tick_s` clock seconds.
    """
    job_ids = ids if isinstance(ids, JobIds) else _distinct(ids)
    ticks = (on_tick, tick_s) if on_tick is not None else None
    events = stream_events(
        job_ids, config, clock or SystemClock(), connect, interrupt=interrupt, ticks=ticks
    )
    async for event in events:
        yield event


async def stream_events(
    job_ids: JobIds,
    config: Config,
    clock: Clock,
    connect: Connect,
    *,
    interrupt: Interrupt | None = None,
    ticks: tuple[TickListener, float] | None = None,
) -> AsyncGenerator[Event, None]:
    """`poll_jobs` with every dependency explicit (tests pass a fake `connect`)."""
    store = StateStore.open(config.state_file) if config.state_file else None
    try:
        run = _Run(job_ids, config, clock, store, interrupt or Interrupt())
        run.ticks = ticks
        yield run.start_event()
        for bad in job_ids.invalid:
            yield InvalidInput(
                ts=run.timestamp(),
                source=bad.source,
                line=bad.line,
                preview=bad.preview,
                reason=bad.reason,
            )
        worker = asyncio.get_running_loop().create_task(run.execute(connect))
        try:
            while (event := await run.events.get()) is not None:
                yield event
                if store is not None and isinstance(event, Result):
                    run.note_written(event)
            await worker
        finally:
            if not worker.done():
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
    finally:
        if store is not None:
            store.close()


def _distinct(ids: Iterable[int]) -> JobIds:
    seen: dict[int, None] = {}
    duplicates = 0
    for job_id in ids:
        if not 1 <= job_id <= MAX_ID:
            raise ValueError(f"job id out of range: {job_id}")
        duplicates += job_id in seen
        seen[job_id] = None
    return JobIds(ids=list(seen), invalid=[], duplicates=duplicates)


class _Run:
    """The state of one run; `execute` drives it and fills `events`."""

    def __init__(
        self,
        job_ids: JobIds,
        config: Config,
        clock: Clock,
        store: StateStore | None,
        interrupt: Interrupt,
    ) -> None:
        self.config = config
        self._interrupt = interrupt
        self.ticks: tuple[TickListener, float] | None = None
        self.clock = clock
        self.events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._job_ids = job_ids
        self._store = store
        limits = GiveUpLimits(config.max_unknown, config.max_not_found, config.max_bad_responses)
        self._jobs = [JobTracker(job_id, limits) for job_id in job_ids.ids]
        self._policy = DelayPolicy(config.min_delay, config.max_delay, random.Random(config.seed))
        self._budget = RateBudget(config.rate, clock)
        self._retry_budget = RetryBudget()
        self._counts: Counter[str] = Counter()
        self._throttles = 0
        self._started = clock.now()
        self._stopped = asyncio.Event()
        self._abort: PollerError | None = None
        self._outstanding = len(self._jobs)
        if store is not None:
            self._resume(store)

    def timestamp(self) -> str:
        return rfc3339(self.clock.wall())

    def elapsed(self) -> float:
        return round(self.clock.now() - self._started, 3)

    def start_event(self) -> Start:
        return Start(
            ts=self.timestamp(),
            jobs=len(self._jobs),
            invalid=len(self._job_ids.invalid),
            duplicates=self._job_ids.duplicates,
            base_url=self.config.base_url,
            concurrency=self.config.concurrency,
            rate=str(self.config.rate),
        )

    def _resume(self, store: StateStore) -> None:
        """Take over what earlier runs learnt; queue the results a crash kept unwritten."""
        stored = store.load(self._job_ids.ids)
        for job in self._jobs:
            known = stored.get(job.id)
            if known is None:
                continue
            job.status, job.polls = known.status, known.polls
            if known.final and known.result is not None:
                job.done = True
                self._outstanding -= 1
                self._counts[known.result] += 1
                if not known.emitted:
                    ending = Ending(FinalStatus(known.result), known.reason, known.details)
                    self._emit(self._result(job, ending, known.event_id))

    async def execute(self, connect: Connect) -> None:
        """Poll every job, then emit the summary and close the event stream."""
        outcomes: dict[str, int] = {}
        try:
            async with connect(self.config, self.clock, self._budget, self._throttled) as client:
                tasks = [
                    asyncio.create_task(self._track(job, client))
                    for job in self._jobs
                    if not job.done
                ]
                if self.ticks is not None:
                    tasks.append(asyncio.create_task(self._tick(client, *self.ticks)))
                try:
                    await self._wait_for_end()
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    await self._budget.aclose()
                    outcomes = dict(client.outcomes)
        except PollerError as error:  # e.g. the state file failed mid-run
            self._stop(error)
        if self._abort is None and not self.config.once and not self._interrupt.requested.is_set():
            with self._store.batch() if self._store else nullcontext():
                for job in self._jobs:
                    if not job.done:
                        self._finish(job, Ending(FinalStatus.TIMED_OUT, job.last_error))
        summary = self._summary(sum(outcomes.values()))
        if self.config.metrics_file is not None:
            self._write_metrics(summary, outcomes)
        self._emit(summary)
        self.events.put_nowait(None)

    async def _tick(self, client: StatusChecker, listener: TickListener, every: float) -> None:
        while True:
            await self.clock.sleep(every)
            listener(self.snapshot(client))

    def snapshot(self, client: StatusChecker) -> Snapshot:
        """Where the run stands now."""
        return Snapshot(
            elapsed_s=self.elapsed(),
            deadline_in_s=max(0.0, self.config.deadline - self.elapsed()),
            total=len(self._jobs),
            counts=dict(self._counts),
            pending=sum(not job.done for job in self._jobs),
            requests=sum(client.outcomes.values()),
            rate=str(self._budget.rate),
            paused_for_s=round(self._budget.paused_for(), 3),
            waiting=self._budget.waiting,
        )

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

    async def _track(self, job: JobTracker, client: StatusChecker) -> None:
        try:
            await self._poll_until_final(job, client)
        except PollerError as error:
            self._stop(error)
        except Exception as error:  # a bug must not lose the job silently
            _log.exception("internal_error", job_id=job.id)
            self._finish(job, Ending(FinalStatus.ERROR, f"internal error: {type(error).__name__}"))
        else:
            if not job.done:  # --once: checked, not final
                self._settle()

    async def _poll_until_final(self, job: JobTracker, client: StatusChecker) -> None:
        spread = min(self.config.min_delay, SPREAD_PER_JOB * len(self._jobs))
        due = self.clock.now() + self._policy.first_delay(spread)
        poll_delays = self._policy.poll_delays()
        retry_delays = self._policy.retry_delays()
        early_retry = False
        while True:
            await self.clock.sleep(due - self.clock.now())
            if not early_retry:
                self._retry_budget.first_try()
            answer = await client.check(job.id, priority=due)
            step = job.observe(answer)
            self._record(job, answer, step)
            if job.done or (self.config.once and step.wait not in (Wait.RETRY, Wait.NOW)):
                return
            if step.wait is Wait.RESTART:
                poll_delays = self._policy.poll_delays()
            if step.wait is not Wait.RETRY:
                retry_delays = self._policy.retry_delays()
            # A failed poll is retried early only while the retry budget lasts; otherwise the
            # job just waits for its next regular poll.
            early_retry = step.wait is Wait.RETRY and self._retry_budget.try_spend()
            wait = Wait.POLL if step.wait is Wait.RETRY and not early_retry else step.wait
            due = self.clock.now() + self._delay(wait, poll_delays, retry_delays)

    def _delay(
        self, wait: Wait, poll_delays: Iterator[float], retry_delays: Iterator[float]
    ) -> float:
        if wait is Wait.RETRY:
            return next(retry_delays)
        if wait is Wait.RECHECK:
            return self._policy.unknown_delay(self.config.unknown_delay)
        if wait is Wait.NOW:
            return 0.0  # the shared budget holds everyone back until the pause ends
        return next(poll_delays)

    def _record(self, job: JobTracker, answer: Answer, step: Step) -> None:
        """Store and emit what `step` says happened."""
        if self._store is not None and step.wait not in (Wait.NOW, Wait.RETRY):
            seen = isinstance(answer, JobState) and answer.status != "UNKNOWN"
            status = answer.status if seen and isinstance(answer, JobState) else None
            self._store.record_poll(job.id, self.clock.wall(), status)
        if step.transition is not None:
            from_, to = step.transition
            self._emit(
                Transition(
                    ts=self.timestamp(),
                    job_id=job.id,
                    from_=from_,
                    to=to,
                    polls=job.polls,
                    elapsed_s=self.elapsed(),
                )
            )
        if step.failure is not None:
            failure = step.failure
            self._emit(
                PollError(
                    ts=self.timestamp(),
                    job_id=job.id,
                    kind=failure.kind,
                    http_status=failure.http_status,
                    attempt=failure.attempt,
                    message=failure.message,
                )
            )
        if step.ending is not None:
            self._finish(job, step.ending)

    def _finish(self, job: JobTracker, ending: Ending) -> None:
        job.done = True
        self._counts[ending.status] += 1
        result = self._result(job, ending, make_event_id(job.id, ending.status))
        if self._store is not None:
            self._store.record_result(
                job.id,
                ending.status,
                self.clock.wall(),
                event_id=result.event_id,
                reason=ending.reason,
                details=ending.details,
            )
        self._emit(result)
        self._settle()

    def _result(self, job: JobTracker, ending: Ending, event_id: str | None) -> Result:
        return Result(
            ts=self.timestamp(),
            job_id=job.id,
            status=ending.status,
            last_status=job.status,
            polls=job.polls,
            elapsed_s=self.elapsed(),
            event_id=event_id or make_event_id(job.id, ending.status),
            reason=ending.reason,
            details=ending.details,
        )

    def note_written(self, result: Result) -> None:
        """The consumer has handled `result`: remember that it was written."""
        assert self._store is not None
        try:
            self._store.mark_emitted([result.job_id])
        except PollerError as error:
            self._stop(error)

    def _settle(self) -> None:
        self._outstanding -= 1
        if self._outstanding == 0:
            self._stopped.set()

    def _stop(self, error: PollerError) -> None:
        if self._abort is None:
            self._abort = error
            _log.error("run_aborted", reason=str(error))
        self._stopped.set()

    def _throttled(self, pause: float, rate: Rate) -> None:
        self._throttles += 1
        self._emit(Throttled(ts=self.timestamp(), retry_after_s=round(pause, 3), rate=str(rate)))

    def _emit(self, event: Event) -> None:
        self.events.put_nowait(event)

    def _summary(self, requests: int) -> Summary:
        counts = {status.value: self._counts[status] for status in FinalStatus}
        counts["pending"] = sum(not job.done for job in self._jobs)
        if self._interrupt.exit_code is not None:
            code = self._interrupt.exit_code
        elif isinstance(self._abort, AuthError):
            code = ExitCode.AUTH
        elif self._abort is not None:
            code = ExitCode.INCOMPLETE
        else:
            code = exit_code_for(counts)
        return Summary(
            ts=self.timestamp(),
            total=len(self._jobs),
            counts=counts,
            requests=requests,
            retries=self._retry_budget.retries,
            throttled=self._throttles,
            duration_s=self.elapsed(),
            exit_code=int(code),
        )

    def _write_metrics(self, summary: Summary, outcomes: dict[str, int]) -> None:
        from .metrics import write_metrics

        assert self.config.metrics_file is not None
        try:
            write_metrics(
                self.config.metrics_file,
                summary,
                requests_by_outcome=outcomes,
                now=self.clock.wall(),
            )
        except OSError as error:
            _log.error(
                "metrics_not_written", path=str(self.config.metrics_file), reason=error.strerror
            )
