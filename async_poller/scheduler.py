"""Polling every job to the end: one coroutine per job under shared limits and one deadline.

`poll_jobs` is the library's entry point and the CLI's engine: an async iterator of events
that starts with `start`, ends with `summary`, and gives every job exactly one `result`
unless the run is cut short.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import structlog

from .budget import RateBudget
from .client import StatusChecker, connect
from .clock import Clock, SystemClock, rfc3339
from .config import Config, Rate
from .errors import AuthError, FatalResponseError, PollerError
from .events import (
    Event,
    InvalidInput,
    PollError,
    Result,
    Start,
    Summary,
    Throttled,
    Transition,
    event_id,
)
from .ids import MAX_ID, JobIds
from .outcome import TERMINAL, ExitCode, FinalStatus, exit_code_for
from .policy import DelayPolicy
from .responses import Answer, JobState, NotFound, Rejected, RetryLater
from .responses import Throttled as ThrottledAnswer
from .transport import ThrottleListener

__all__ = ["Connect", "poll_jobs", "stream_events"]

Connect = Callable[
    [Config, Clock, RateBudget, ThrottleListener], AbstractAsyncContextManager[StatusChecker]
]
"""Opens the way to the API: `client.connect` for real HTTP, a fake in scheduler tests."""

_log = structlog.get_logger("async_poller")

SPREAD_PER_JOB = 0.01
"""First polls are spread over 10 ms per job (at most `min_delay`), so a large batch does
not fire at once."""


@dataclass(slots=True)
class _Job:
    id: int
    status: str | None = None
    polls: int = 0
    attempt: int = 0
    unknown_streak: int = 0
    not_found_streak: int = 0
    bad_streak: int = 0
    last_error: str | None = None
    done: bool = False


@dataclass(slots=True)
class _Tally:
    counts: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    throttled: int = 0


async def poll_jobs(
    ids: Iterable[int] | JobIds, config: Config, *, clock: Clock | None = None
) -> AsyncGenerator[Event, None]:
    """Poll every job in `ids` until it is final or `config.deadline` passes.

    Yields `start`, then `invalid_input` for skipped lines (when `ids` is a `JobIds`), then
    `transition`, `result`, `poll_error` and `throttled` as they happen, and `summary` last.
    Leaving the loop early cancels the run cleanly.
    """
    job_ids = ids if isinstance(ids, JobIds) else _distinct(ids)
    async for event in stream_events(job_ids, config, clock or SystemClock(), connect):
        yield event


async def stream_events(
    job_ids: JobIds, config: Config, clock: Clock, connect: Connect
) -> AsyncGenerator[Event, None]:
    """`poll_jobs` with every dependency explicit (tests pass a fake `connect`)."""
    run = _Run(job_ids, config, clock)
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
        await worker
    finally:
        if not worker.done():
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)


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

    def __init__(self, job_ids: JobIds, config: Config, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._job_ids = job_ids
        self._jobs = [_Job(job_id) for job_id in job_ids.ids]
        self._policy = DelayPolicy(config.min_delay, config.max_delay, random.Random(config.seed))
        self._tally = _Tally()
        self._started = clock.now()
        self._outstanding = len(self._jobs)
        self._stopped = asyncio.Event()
        self._abort: PollerError | None = None
        self._budget = RateBudget(config.rate, clock)

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

    async def execute(self, connect: Connect) -> None:
        """Poll every job, then emit the summary and close the event stream."""
        async with connect(self.config, self.clock, self._budget, self._throttled) as client:
            tasks = [asyncio.create_task(self._track(job, client)) for job in self._jobs]
            try:
                await self._wait_for_end()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self._budget.aclose()
            requests = client.requests
        if self._abort is None and not self.config.once:
            for job in self._jobs:
                if not job.done:
                    self._finish(job, FinalStatus.TIMED_OUT, job.last_error)
        self._emit(self._summary(requests))
        self.events.put_nowait(None)

    async def _wait_for_end(self) -> None:
        if self._outstanding == 0:
            return
        deadline = asyncio.create_task(self.clock.sleep(self.config.deadline))
        stopped = asyncio.create_task(self._stopped.wait())
        try:
            await asyncio.wait({deadline, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            deadline.cancel()
            stopped.cancel()

    async def _track(self, job: _Job, client: StatusChecker) -> None:
        try:
            await self._poll_until_final(job, client)
        except PollerError as error:
            self._stop(error)
        except Exception as error:  # a bug must not lose the job silently
            _log.exception("internal_error", job_id=job.id)
            self._finish(job, FinalStatus.ERROR, f"internal error: {type(error).__name__}")
        finally:
            if not job.done and self.config.once and self._abort is None:
                self._settle()

    async def _poll_until_final(self, job: _Job, client: StatusChecker) -> None:
        spread = min(self.config.min_delay, SPREAD_PER_JOB * len(self._jobs))
        due = self.clock.now() + self._policy.first_delay(spread)
        poll_delays = self._policy.poll_delays()
        retry_delays = self._policy.retry_delays()
        while not job.done:
            await self.clock.sleep(due - self.clock.now())
            answer = await client.check(job.id, priority=due)
            if not isinstance(answer, ThrottledAnswer):
                job.polls += 1
            wait = self._react(job, answer, poll_delays, retry_delays)
            if wait is None:
                poll_delays = self._policy.poll_delays()
                wait = next(poll_delays)
            if not isinstance(answer, RetryLater | ThrottledAnswer):
                retry_delays = self._policy.retry_delays()
                if self.config.once:
                    return
            due = self.clock.now() + wait

    def _react(
        self,
        job: _Job,
        answer: Answer,
        poll_delays: Iterator[float],
        retry_delays: Iterator[float],
    ) -> float | None:
        """Update `job` from `answer`; return the delay to the next poll, or None for
        "the status changed: start the delays over"."""
        if not isinstance(answer, RetryLater):
            job.attempt = job.bad_streak = 0
        if not isinstance(answer, JobState | ThrottledAnswer):
            job.unknown_streak = 0
        if not isinstance(answer, NotFound):
            job.not_found_streak = 0
        match answer:
            case JobState(status="UNKNOWN"):
                job.unknown_streak += 1
                if job.unknown_streak >= self.config.max_unknown:
                    self._finish(job, FinalStatus.UNKNOWN, "the API kept answering UNKNOWN")
                return self._policy.unknown_delay(self.config.unknown_delay)
            case JobState(status=status, reason=reason, details=details):
                job.unknown_streak = 0
                changed = status != job.status
                if changed:
                    self._emit(
                        Transition(
                            ts=self.timestamp(),
                            job_id=job.id,
                            from_=job.status,
                            to=status,
                            polls=job.polls,
                            elapsed_s=self.elapsed(),
                        )
                    )
                    job.status = status
                if status in TERMINAL:
                    self._finish(job, FinalStatus(status), reason, details)
                return None if changed else next(poll_delays)
            case NotFound(message=message):
                job.not_found_streak += 1
                if job.not_found_streak >= self.config.max_not_found:
                    self._finish(job, FinalStatus.NOT_FOUND, message)
                return next(poll_delays)
            case Rejected(message=message):
                self._finish(job, FinalStatus.ERROR, message)
                return 0.0
            case ThrottledAnswer():
                return 0.0  # the shared budget holds everyone back until the pause ends
            case RetryLater(kind=kind, http_status=http_status, message=message):
                job.attempt += 1
                job.last_error = message
                self._tally.retries += 1
                self._emit(
                    PollError(
                        ts=self.timestamp(),
                        job_id=job.id,
                        kind=kind,
                        http_status=http_status,
                        attempt=job.attempt,
                        message=message,
                    )
                )
                if kind == "bad_response":
                    job.bad_streak += 1
                    if job.bad_streak >= self.config.max_bad_responses:
                        self._finish(job, FinalStatus.ERROR, message)
                return next(retry_delays)
        raise AssertionError(f"unhandled answer {answer!r}")

    def _finish(
        self, job: _Job, status: FinalStatus, reason: str | None = None, details: object = None
    ) -> None:
        job.done = True
        self._tally.counts[status] += 1
        self._emit(
            Result(
                ts=self.timestamp(),
                job_id=job.id,
                status=status,
                last_status=job.status,
                polls=job.polls,
                elapsed_s=self.elapsed(),
                event_id=event_id(job.id, status),
                reason=reason,
                details=details,
            )
        )
        self._settle()

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
        self._tally.throttled += 1
        self._emit(Throttled(ts=self.timestamp(), retry_after_s=round(pause, 3), rate=str(rate)))

    def _emit(self, event: Event) -> None:
        self.events.put_nowait(event)

    def _summary(self, requests: int) -> Summary:
        counts = {status.value: self._tally.counts[status] for status in FinalStatus}
        counts["pending"] = sum(not job.done for job in self._jobs)
        if isinstance(self._abort, AuthError):
            code = ExitCode.AUTH
        elif isinstance(self._abort, FatalResponseError):
            code = ExitCode.INCOMPLETE
        else:
            code = exit_code_for(counts)
        return Summary(
            ts=self.timestamp(),
            total=len(self._jobs),
            counts=counts,
            requests=requests,
            retries=self._tally.retries,
            throttled=self._tally.throttled,
            duration_s=self.elapsed(),
            exit_code=int(code),
        )
