"""Job statuses and the exit codes they add up to: the one place outcomes become numbers.

A run that ends ends with `exit_code_for` its counts; one that an error stops (or keeps
from starting) with `exit_code_of` that error; a signal has a code of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum, StrEnum
from typing import Final

from .errors import (
    AsyncPollerError,
    AuthError,
    ConfigError,
    FatalResponseError,
    InputError,
    OutputError,
    StateLocked,
)

__all__ = [
    "ACTIVE",
    "LIFECYCLE",
    "TERMINAL",
    "ExitCode",
    "FinalStatus",
    "exit_code_for",
    "exit_code_of",
]

ACTIVE: Final = frozenset({"QUEUED", "PREPARING", "PROCESSING"})
"""Statuses of a job still under way."""
TERMINAL: Final = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
"""Statuses the API reports for a finished job."""
LIFECYCLE: Final = ACTIVE | TERMINAL | {"UNKNOWN"}
"""Every status word the API uses (UNKNOWN means "ask again soon")."""


class FinalStatus(StrEnum):
    """How a job ended, as `result.status` reports it."""

    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    NOT_FOUND = "NOT_FOUND"
    UNKNOWN = "UNKNOWN"
    ERROR = "ERROR"


class ExitCode(IntEnum):
    """The process exit codes of docs/exit-codes.md."""

    OK = 0
    FAILED = 1
    USAGE = 2
    INCOMPLETE = 3
    AUTH = 4
    LOCKED = 5
    UNTRUSTED = 6
    """The API's answer was refused for safety (TLS verification failed, a redirect): an
    attack or a misconfiguration, not slowness; run aborted."""
    OUTPUT = 74
    """The events could not be written (EX_IOERR): a full disk, `/dev/full`, an I/O error."""
    INTERNAL = 70
    """A bug in async-poller (EX_SOFTWARE), never an outcome of the jobs."""
    SIGHUP = 129
    """The terminal went away (an SSH session dropped): stopped like SIGTERM."""
    SIGINT = 130
    SIGTERM = 143


def exit_code_for(counts: Mapping[str, int]) -> ExitCode:
    """The exit code of a run that was not aborted, from its counts by final status.

    `counts` may include `pending` (jobs without a result). Precedence: 3, then 1, then 0.
    """
    if any(n for status, n in counts.items() if status not in ("COMPLETED", "FAILED", "CANCELLED")):
        return ExitCode.INCOMPLETE
    if counts.get("FAILED", 0) or counts.get("CANCELLED", 0):
        return ExitCode.FAILED
    return ExitCode.OK


def exit_code_of(error: AsyncPollerError, *, started: bool) -> ExitCode:
    """The exit code of a run that `error` stopped (`started`) or kept from starting.

    The same error can mean two things: a state file that cannot be opened is a usage error,
    one that fails halfway only cuts the run short.
    """
    if isinstance(error, AuthError):
        return ExitCode.AUTH
    if isinstance(error, FatalResponseError):
        return ExitCode.UNTRUSTED
    if isinstance(error, OutputError):
        return ExitCode.OUTPUT
    if started:
        return ExitCode.INCOMPLETE
    if isinstance(error, StateLocked):
        return ExitCode.LOCKED
    if isinstance(error, ConfigError | InputError):
        return ExitCode.USAGE
    return ExitCode.INCOMPLETE
