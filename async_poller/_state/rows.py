"""What the state file holds, read back: `StoredJob` and `HistoryEntry`, each row checked.

A value of the wrong type (a file edited or damaged by hand) is a `DamagedRow` here, which
the store turns into a clear `StateError`, never a crash later on. No SQL: that stays in
`store`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import orjson

from ..outcome import TERMINAL, FinalStatus

__all__ = ["DamagedRow", "HistoryEntry", "StoredJob", "history_entry", "stored_job"]

_RESULTS: Final = frozenset(FinalStatus)


class DamagedRow(Exception):
    """A row of the state file that cannot be what the store wrote."""


@dataclass(frozen=True, slots=True)
class StoredJob:
    """What the state file knows about one job.

    `status` is the last lifecycle status the API answered (never UNKNOWN); `first_seen` and
    `last_seen` are when the job was first and last recorded (a poll answered or a result);
    `polls` counts across runs. `result` is the latest `result.status` (None if no run gave
    one) with its `result_at`, `reason`, `details` and `event_id`; `emitted` says its event
    was written.
    """

    job_id: int
    status: str | None
    first_seen: float
    last_seen: float
    polls: int
    result: str | None
    result_at: float | None
    reason: str | None
    details: Any
    event_id: str | None
    emitted: bool

    @property
    def final(self) -> bool:
        """COMPLETED, FAILED or CANCELLED: never polled again, and its result never changes."""
        return self.result in TERMINAL


class HistoryEntry(NamedTuple):
    """One recorded transition of a job's lifecycle status."""

    from_status: str | None
    to_status: str
    at: float


def stored_job(row: tuple[Any, ...]) -> StoredJob:
    """A `jobs` row (the store's column order) as a `StoredJob`."""
    job_id, status, first, last, polls, result, result_at, reason, details, eid, sent = row
    if not (
        isinstance(job_id, int)
        and _is(status, str, optional=True)
        and _is(first, float)
        and _is(last, float)
        and isinstance(polls, int)
        and (result is None or result in _RESULTS)
        and _is(result_at, float, optional=True)
        and _is(reason, str, optional=True)
        and _is(details, str, optional=True)
        and _is(eid, str, optional=True)
        and isinstance(sent, int)
    ):
        raise DamagedRow(f"the row of job {job_id!r} holds a value of the wrong type")
    try:
        decoded = None if details is None else orjson.loads(details)
    except orjson.JSONDecodeError:
        raise DamagedRow(f"the details of job {job_id} are not JSON") from None
    return StoredJob(
        job_id, status, first, last, polls, result, result_at, reason, decoded, eid, bool(sent)
    )


def history_entry(job_id: int, row: tuple[Any, ...]) -> HistoryEntry:
    """A `transitions` row (from, to, at) of `job_id` as a `HistoryEntry`."""
    entry = HistoryEntry(*row)
    if not (
        _is(entry.from_status, str, optional=True)
        and isinstance(entry.to_status, str)
        and _is(entry.at, float)
    ):
        raise DamagedRow(f"job {job_id} has a damaged history entry")
    return entry


def _is(value: object, kind: type, *, optional: bool = False) -> bool:
    """`value` is of `kind` (an int counts as a float), or None when `optional`."""
    if value is None:
        return optional
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)
