"""What happened in a run: every event, the state file's record of it, and the tallies.

The `Run` decides what to do; the `Ledger` writes down what came of it, in the one order
that survives a crash: the state file first, then the event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._lucidity.responses import Answer, JobState
from .._state.store import StateStore
from ..clock import Clock, rfc3339
from ..config import Config, Rate, format_duration
from ..events import (
    Event,
    InvalidInput,
    PollError,
    Result,
    RunWarning,
    Start,
    Summary,
    Throttled,
    Transition,
    event_id,
)
from ..ids import JobIds
from ..logs import get_logger
from ..outcome import FinalStatus
from ..redact import redact, redact_value
from .job import Ending, JobTracker, Step, Wait

__all__ = ["Ledger"]

_log = get_logger()


class Ledger:
    """Hands a run's events to `emit` and mirrors them into the state file, if any."""

    def __init__(
        self, clock: Clock, emit: Callable[[Event], None], store: StateStore | None
    ) -> None:
        self.clock = clock
        self.emit = emit
        self.store = store
        self.counts: Counter[str] = Counter()
        """Jobs final so far, by final status (earlier runs' included)."""
        self.throttles = 0
        self._started = clock.now()

    def timestamp(self) -> str:
        return rfc3339(self.clock.wall())

    def elapsed(self) -> float:
        """Clock seconds since the run started."""
        return round(self.clock.now() - self._started, 3)

    def start(self, job_ids: JobIds, config: Config) -> Start:
        return Start(
            ts=self.timestamp(),
            jobs=len(job_ids.ids),
            invalid=len(job_ids.invalid),
            duplicates=job_ids.duplicates,
            base_url=config.base_url,
            concurrency=config.concurrency,
            rate=str(config.rate),
        )

    def invalid_inputs(self, job_ids: JobIds) -> list[InvalidInput]:
        return [
            InvalidInput(
                ts=self.timestamp(),
                source=bad.source,
                line=bad.line,
                preview=bad.preview,
                reason=bad.reason,
            )
            for bad in job_ids.invalid
        ]

    def resume(self, jobs: Sequence[JobTracker]) -> None:
        """Take over what earlier runs learnt; queue the results a crash kept unwritten."""
        if self.store is None:
            return
        stored = self.store.load(job.id for job in jobs)
        for job in jobs:
            known = stored.get(job.id)
            if known is None:
                continue
            job.status, job.polls = known.status, known.polls
            if known.final and known.result is not None:
                job.done = True
                self.counts[known.result] += 1
                if not known.emitted:
                    ending = Ending(FinalStatus(known.result), known.reason, known.details)
                    self.emit(self._result(job, ending, known.event_id))

    def record(self, job: JobTracker, answer: Answer, step: Step) -> None:
        """Store and emit what one answer meant for `job`."""
        if self.store is not None and step.wait not in (Wait.NOW, Wait.RETRY):
            known = isinstance(answer, JobState) and answer.status != "UNKNOWN"
            status = answer.status if known and isinstance(answer, JobState) else None
            self.store.record_poll(job.id, self.clock.wall(), status)
        if step.transition is not None:
            from_, to = step.transition
            self.emit(
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
            self.emit(
                PollError(
                    ts=self.timestamp(),
                    job_id=job.id,
                    kind=failure.kind,
                    http_status=failure.http_status,
                    attempt=failure.attempt,
                    message=redact(failure.message),
                )
            )
        if step.ending is not None:
            self.finish(job, step.ending)

    def finish(self, job: JobTracker, ending: Ending) -> None:
        """`job` is final: store its result, then emit it (the server's words redacted)."""
        job.done = True
        self.counts[ending.status] += 1
        result = self._result(job, ending, event_id(job.id, ending.status))
        if self.store is not None:
            self.store.record_result(
                job.id,
                ending.status,
                self.clock.wall(),
                event_id=result.event_id,
                reason=result.reason,
                details=result.details,
            )
        self.emit(result)

    def _result(self, job: JobTracker, ending: Ending, stable_id: str | None) -> Result:
        return Result(
            ts=self.timestamp(),
            job_id=job.id,
            status=ending.status,
            last_status=job.status,
            polls=job.polls,
            elapsed_s=self.elapsed(),
            event_id=stable_id or event_id(job.id, ending.status),
            # Defence in depth: `responses` masks tokens already, before it cuts text short.
            reason=None if ending.reason is None else redact(ending.reason),
            details=redact_value(ending.details),
        )

    def written(self, result: Result) -> None:
        """The consumer has handled `result`: remember that it was written."""
        if self.store is not None:
            self.store.mark_emitted([result.job_id])

    def warning(self, code: str, message: str, details: Mapping[str, Any]) -> RunWarning:
        """A `warning` event, logged for the people reading stderr as it is made."""
        _log.warning(code, message=message, **details)
        return RunWarning(ts=self.timestamp(), code=code, message=message, details=dict(details))

    def throttled(self, pause: float, rate: Rate) -> None:
        self.throttles += 1
        self.emit(Throttled(ts=self.timestamp(), retry_after_s=round(pause, 3), rate=str(rate)))

    def budget_warning(self, unfinished: int, config: Config) -> RunWarning | None:
        """A warning when the budget cannot poll every job once per `max_delay`."""
        per_second = config.rate.per_second
        round_s = unfinished / per_second
        if round_s <= config.max_delay:
            return None
        details = {
            "jobs": unfinished,
            "budget_per_min": round(per_second * 60, 1),
            "needed_per_min": round(unfinished / config.max_delay * 60, 1),
            "seconds_per_round": round(round_s, 1),
            "max_delay_s": config.max_delay,
            "deadline_s": config.deadline,
        }
        if round_s > config.deadline:
            message = (
                f"the budget ({config.rate}) cannot poll all {unfinished} jobs even once "
                f"before the deadline: one round takes {format_duration(round(round_s))}"
            )
        else:
            message = (
                f"the budget ({config.rate}) cannot poll {unfinished} jobs once per "
                f"--max-delay ({format_duration(config.max_delay)}): that needs "
                f"{details['needed_per_min']}/min; expect a poll per job about every "
                f"{format_duration(round(round_s))}"
            )
        return self.warning("budget_short", message, details)

    def summary(
        self,
        jobs: Sequence[JobTracker],
        *,
        requests: int,
        retries: int,
        rate: Rate,
        exit_code: int,
    ) -> Summary:
        return Summary(
            ts=self.timestamp(),
            total=len(jobs),
            counts=self.final_counts(jobs),
            requests=requests,
            retries=retries,
            throttled=self.throttles,
            rate=str(rate),
            duration_s=self.elapsed(),
            exit_code=exit_code,
        )

    def final_counts(self, jobs: Sequence[JobTracker]) -> dict[str, int]:
        """Jobs by final status, every status named, plus `pending`."""
        counts = {status.value: self.counts[status] for status in FinalStatus}
        counts["pending"] = sum(not job.done for job in jobs)
        return counts
