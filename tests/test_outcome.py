"""Exit codes: the one mapping from a run's counts, or the error that stopped it, to a code."""

from __future__ import annotations

import pytest

from async_poller.errors import (
    AsyncPollerError,
    AuthError,
    ConfigError,
    FatalResponseError,
    InputError,
    OutputError,
    StateError,
    StateLocked,
)
from async_poller.outcome import ExitCode, exit_code_for, exit_code_of


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"COMPLETED": 3, "pending": 0}, ExitCode.OK),
        ({"COMPLETED": 2, "FAILED": 1}, ExitCode.FAILED),
        ({"COMPLETED": 2, "CANCELLED": 1}, ExitCode.FAILED),
        ({"FAILED": 1, "TIMED_OUT": 1}, ExitCode.INCOMPLETE),
        ({"COMPLETED": 1, "pending": 1}, ExitCode.INCOMPLETE),
        ({"NOT_FOUND": 1}, ExitCode.INCOMPLETE),
        ({"COMPLETED": 0, "FAILED": 0, "pending": 0}, ExitCode.OK),
    ],
)
def test_counts_add_up_to_a_code(counts: dict[str, int], expected: ExitCode) -> None:
    """3 (something unfinished) beats 1 (something failed), which beats 0."""
    assert expected == exit_code_for(counts)


@pytest.mark.parametrize(
    ("error", "before", "during"),
    [
        (ConfigError("x"), ExitCode.USAGE, ExitCode.INCOMPLETE),
        (InputError("x"), ExitCode.USAGE, ExitCode.INCOMPLETE),
        (StateError("x"), ExitCode.USAGE, ExitCode.INCOMPLETE),
        (StateLocked("x"), ExitCode.LOCKED, ExitCode.INCOMPLETE),
        (OutputError("x"), ExitCode.OUTPUT, ExitCode.OUTPUT),
        (AuthError("x"), ExitCode.AUTH, ExitCode.AUTH),
        (FatalResponseError("x"), ExitCode.UNTRUSTED, ExitCode.UNTRUSTED),
        (AsyncPollerError("x"), ExitCode.INCOMPLETE, ExitCode.INCOMPLETE),
    ],
)
def test_an_error_maps_to_one_code(
    error: AsyncPollerError, before: ExitCode, during: ExitCode
) -> None:
    """Before polling began, an unusable state file is a usage error; once it began, a
    state file failing only cuts the run short. Auth, safety and output keep their codes."""
    assert (before, during) == (
        exit_code_of(error, started=False),
        exit_code_of(error, started=True),
    )
