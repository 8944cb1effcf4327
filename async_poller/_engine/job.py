"""One job's polling state machine: what an answer means for the job. Pure, no I/O.

The scheduler feeds each `Answer` to `JobTracker.observe` and acts on the returned `Step`:
emit the transition, the poll error or the result it names, then wait as `Step.wait` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from .._lucidity.responses import Answer, JobState, NotFound, Overloaded, Rejected, RetryLater
from ..outcome import TERMINAL, FinalStatus

__all__ = ["Ending", "Failure", "GiveUpLimits", "JobTracker", "Step", "Wait"]


class Wait(Enum):
    """How long to wait before the next poll of the job."""

    RESTART = "restart"  # the status changed: delays start over from --min-delay
    POLL = "poll"  # the next regular (growing) delay
    RETRY = "retry"  # a request failed: the next retry delay
    RECHECK = "recheck"  # UNKNOWN: ask again in a few seconds
    NOW = "now"  # throttled: go again as soon as the shared budget allows


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed poll, to report as `poll_error`."""

    kind: str
    http_status: int | None
    attempt: int
    message: str


@dataclass(frozen=True, slots=True)
class Ending:
    """The job is final, to report as `result`."""

    status: FinalStatus
    reason: str | None = None
    details: Any = None


@dataclass(frozen=True, slots=True)
class Step:
    """What one answer means: at most one transition, failure and ending, then a wait."""

    wait: Wait
    transition: tuple[str | None, str] | None = None
    failure: Failure | None = None
    ending: Ending | None = None


@dataclass(frozen=True, slots=True)
class GiveUpLimits:
    """When a job ends without a terminal status: after so many consecutive UNKNOWN or 404
    answers, or after malformed answers that lasted `bad_response_window` clock seconds."""

    unknown: int = 6
    not_found: int = 3
    bad_response_window: float = 600.0


@dataclass(slots=True)
class JobTracker:
    """What is known about one job, updated answer by answer."""

    id: int
    limits: GiveUpLimits
    status: str | None = None
    """The last lifecycle status seen (never UNKNOWN)."""
    polls: int = 0
    """Polls that got an answer other than throttling."""
    attempt: int = 0
    """Consecutive failed polls."""
    unknown_streak: int = 0
    not_found_streak: int = 0
    bad_since: float | None = None
    """When the current run of malformed answers began (None after a good answer)."""
    last_error: str | None = None
    """The latest failure, until an answer comes (a TIMED_OUT result's reason)."""
    done: bool = False

    def observe(self, answer: Answer, now: float) -> Step:
        """Update the job from `answer`, received at clock time `now`, and say what follows."""
        if isinstance(answer, Overloaded):
            return Step(Wait.NOW)
        self.polls += 1
        if not isinstance(answer, RetryLater):
            self.attempt = 0
            self.bad_since = None
            self.last_error = None
        if not isinstance(answer, NotFound):
            self.not_found_streak = 0
        if not (isinstance(answer, JobState) and answer.status == "UNKNOWN"):
            self.unknown_streak = 0
        match answer:
            case JobState(status="UNKNOWN"):
                self.unknown_streak += 1
                if self.unknown_streak >= self.limits.unknown:
                    return self._end(
                        Wait.RECHECK, FinalStatus.UNKNOWN, "the API kept answering UNKNOWN"
                    )
                return Step(Wait.RECHECK)
            case JobState(status=status, reason=reason, details=details):
                transition = (self.status, status) if status != self.status else None
                self.status = status
                ending = (
                    Ending(FinalStatus(status), reason, details) if status in TERMINAL else None
                )
                self.done = ending is not None
                wait = Wait.RESTART if transition else Wait.POLL
                return Step(wait, transition=transition, ending=ending)
            case NotFound(message=message):
                self.not_found_streak += 1
                if self.not_found_streak >= self.limits.not_found:
                    return self._end(Wait.POLL, FinalStatus.NOT_FOUND, message)
                return Step(Wait.POLL)
            case Rejected(message=message):
                return self._end(Wait.POLL, FinalStatus.ERROR, message)
            case RetryLater(kind=kind, http_status=http_status, message=message):
                self.attempt += 1
                self.last_error = message
                failure = Failure(kind, http_status, self.attempt, message)
                if kind == "bad_response":
                    # A maintenance page served as 200 is as transient as a 503: give up
                    # on how long it lasts, not on how many polls saw it.
                    self.bad_since = now if self.bad_since is None else self.bad_since
                    if now - self.bad_since >= self.limits.bad_response_window:
                        return self._end(Wait.RETRY, FinalStatus.ERROR, message)
                return Step(Wait.RETRY, failure=failure)
        raise TypeError(f"not an answer the scheduler handles: {answer!r}")

    def _end(self, wait: Wait, status: FinalStatus, reason: str | None) -> Step:
        self.done = True
        return Step(wait, ending=Ending(status, reason))
