"""The SQLite state file behind `--state`: resume, report only what changed, keep history.

All SQL lives here. A run opens the store for writing, which takes an exclusive `flock` on a
sidecar `PATH.lock`; the kernel drops it when the process dies, so a killed run never leaves a
stale lock. `async-poller report` opens the store read-only and takes no lock: WAL lets it
read while a run writes. Every `record_*` call is its own transaction unless grouped with
`batch()`. Times are epoch seconds from the caller's clock; the store never reads the time.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import orjson

from ..errors import StateError, StateLocked
from ..outcome import ACTIVE, TERMINAL, FinalStatus
from .file import MOVE_ASIDE, check_access, lock, translated
from .rows import DamagedRow, HistoryEntry, StoredJob, history_entry, stored_job

__all__ = ["SCHEMA_VERSION", "HistoryEntry", "StateError", "StateLocked", "StateStore", "StoredJob"]

SCHEMA_VERSION: Final = 1
APPLICATION_ID: Final = 0x41505354
"""`PRAGMA application_id` ("APST"): tells our files from other SQLite databases."""

_CHUNK: Final = 500
"""Ids per `IN (...)` query: below every SQLite build's limit on bound parameters."""

_COLUMNS: Final = (
    "job_id, status, first_seen, last_seen, polls, result, result_at, reason, details, "
    "event_id, emitted"
)
_LIFECYCLE: Final = ACTIVE | TERMINAL
_TERMINAL_SQL: Final = ", ".join(f"'{status}'" for status in sorted(TERMINAL))
_NOT_FINAL: Final = f"coalesce(jobs.result, '') NOT IN ({_TERMINAL_SQL})"


def _to_v1(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE jobs (job_id INTEGER PRIMARY KEY, status TEXT, first_seen REAL NOT NULL,"
        " last_seen REAL NOT NULL, polls INTEGER NOT NULL DEFAULT 0, result TEXT,"
        " result_at REAL, reason TEXT, details TEXT, event_id TEXT,"
        " emitted INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute(
        "CREATE TABLE transitions (job_id INTEGER NOT NULL REFERENCES jobs (job_id),"
        " from_status TEXT, to_status TEXT NOT NULL, at REAL NOT NULL)"
    )
    # Rowids follow insertion, so this index also yields a job's history in order.
    db.execute("CREATE INDEX transitions_by_job ON transitions (job_id)")


MIGRATIONS: Final[dict[int, Callable[[sqlite3.Connection], None]]] = {0: _to_v1}
"""Step `n` turns a version-`n` file into version `n + 1`, inside the opening transaction."""


class StateStore:
    """The state file of `--state`; open with `StateStore.open`, use as a context manager."""

    def __init__(self, path: Path, db: sqlite3.Connection, lock_fd: int | None) -> None:
        self.path = path
        self._db = db
        self._lock_fd = lock_fd
        self._depth = 0

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> StateStore:
        """Open (for writing: create if missing, lock, migrate) the state file at `path`.

        Raises `StateLocked` if another run writes it, `StateError` if it cannot be used.
        Read-only opens take no lock and never create or change the file.
        """
        if path.is_dir():
            raise StateError(f"state file {path} is a directory\nHINT: give a file path")
        lock_fd = None if readonly else lock(path)
        db = None
        try:
            check_access(path, readonly)
            uri = f"{path.absolute().as_uri()}?mode={'ro' if readonly else 'rwc'}"
            with translated(path):
                try:
                    db = sqlite3.connect(uri, uri=True, isolation_level=None)
                    store = cls(path, db, lock_fd)
                    store._prepare(readonly)
                except sqlite3.OperationalError:
                    # A read-only mount: SQLite cannot create the WAL index beside the file.
                    # Nobody can write there either, so the file is read as immutable.
                    if not readonly or os.access(path.parent, os.W_OK):
                        raise
                    if db is not None:
                        db.close()
                    db = sqlite3.connect(f"{uri}&immutable=1", uri=True, isolation_level=None)
                    store = cls(path, db, lock_fd)
                    store._prepare(readonly)
        except BaseException:
            if db is not None:
                db.close()
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return store

    def _prepare(self, readonly: bool) -> None:
        self._db.execute("PRAGMA busy_timeout = 5000")
        (app_id,) = self._db.execute("PRAGMA application_id").fetchone()
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        (objects,) = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        fresh = app_id == 0 and version == 0 and objects == 0
        if not fresh and app_id != APPLICATION_ID:
            raise StateError(
                f"{self.path} is an SQLite database but not an async-poller state file\n"
                "HINT: pass another --state path; async-poller never changes this file"
            )
        (check,) = self._db.execute("PRAGMA quick_check(1)").fetchone()
        if check != "ok":
            raise StateError(
                f"state file {self.path} is damaged ({' '.join(check.split())})\nHINT: {MOVE_ASIDE}"
            )
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state file {self.path} has schema version {version}, newer than this "
                f"async-poller supports ({SCHEMA_VERSION})\nHINT: upgrade async-poller"
            )
        if version < 0 or (version == 0 and not fresh):
            raise StateError(
                f"state file {self.path} has an unknown schema version ({version})\n"
                f"HINT: {MOVE_ASIDE}"
            )
        if readonly:
            if version < SCHEMA_VERSION:
                raise StateError(
                    f"state file {self.path} holds no async-poller data (schema {version})\n"
                    "HINT: run 'async-poller poll --state PATH' to fill it"
                )
            return
        # WAL with synchronous=NORMAL: a commit is in the WAL before COMMIT returns, so a
        # killed process loses nothing committed (only power loss can drop the last ones).
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        if version < SCHEMA_VERSION:
            with self.batch():
                for step in range(version, SCHEMA_VERSION):
                    MIGRATIONS[step](self._db)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    def close(self) -> None:
        """Close the database, then release the lock (so the next run finds it checkpointed)."""
        self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self._lock_fd is None else "locked"
        return f"StateStore({str(self.path)!r}, {mode})"

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group the calls in the body into one transaction (committed on exit).

        Nothing in the body is durable before the block ends: write events after it.
        """
        if self._depth:
            yield
            return
        with translated(self.path):
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                # A failed COMMIT may already have rolled back; a second ROLLBACK would fail.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    def record_poll(self, job_id: int, at: float, status: str | None) -> bool:
        """Count one answered poll; `status` is its lifecycle status (None for UNKNOWN,
        404 or an error). Returns True when that is a transition from the stored status,
        which is then appended to the job's history in the same transaction."""
        if status is not None and status not in _LIFECYCLE:
            raise ValueError(f"not a lifecycle status: {status!r}")
        with self.batch():
            row = self._db.execute("SELECT status FROM jobs WHERE job_id = ?", (job_id,))
            previous = row.fetchone()
            self._db.execute(
                "INSERT INTO jobs (job_id, status, first_seen, last_seen, polls)"
                " VALUES (?1, ?2, ?3, ?3, 1) ON CONFLICT (job_id) DO UPDATE SET"
                " polls = polls + 1, last_seen = ?3, status = coalesce(?2, status)",
                (job_id, status, at),
            )
            from_status = previous[0] if previous else None
            changed = status is not None and status != from_status
            if changed:
                self._db.execute(
                    "INSERT INTO transitions (job_id, from_status, to_status, at)"
                    " VALUES (?, ?, ?, ?)",
                    (job_id, from_status, status, at),
                )
        return changed

    def record_result(
        self,
        job_id: int,
        status: str,
        at: float,
        *,
        event_id: str,
        reason: str | None = None,
        details: object = None,
    ) -> None:
        """Store the job's result, committed before this returns (then write the event).

        A COMPLETED, FAILED or CANCELLED result is final: later calls leave it unchanged.
        Any other status (TIMED_OUT, NOT_FOUND, UNKNOWN, ERROR) is kept as the latest
        outcome for the audit trail, and the next run polls the job again.
        """
        FinalStatus(status)  # ValueError for anything but a result status
        encoded = None if details is None else orjson.dumps(details).decode()
        with self.batch():
            self._db.execute(
                "INSERT INTO jobs (job_id, first_seen, last_seen, result, result_at, reason,"
                " details, event_id) VALUES (?1, ?2, ?2, ?3, ?2, ?4, ?5, ?6)"
                " ON CONFLICT (job_id) DO UPDATE SET last_seen = ?2, result = ?3,"
                " result_at = ?2, reason = ?4, details = ?5, event_id = ?6, emitted = 0"
                f" WHERE {_NOT_FINAL}",
                (job_id, at, status, reason, encoded, event_id),
            )

    def mark_emitted(self, job_ids: Iterable[int]) -> None:
        """Record that the result events of `job_ids` were written."""
        with self.batch():
            self._db.executemany(
                "UPDATE jobs SET emitted = 1 WHERE job_id = ?", ((job_id,) for job_id in job_ids)
            )

    def load(self, job_ids: Iterable[int]) -> dict[int, StoredJob]:
        """The stored jobs among `job_ids` (ids the store does not know are left out).

        Final jobs with `emitted` False are results a crash kept from being written.
        """
        ids = list(job_ids)
        found: dict[int, StoredJob] = {}
        with translated(self.path):
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                query = f"SELECT {_COLUMNS} FROM jobs WHERE job_id IN ({marks})"
                for row in self._db.execute(query, chunk):
                    found[row[0]] = self._stored_job(row)
        return found

    def jobs(self, statuses: Collection[str] | None = None) -> Iterator[StoredJob]:
        """Every stored job, by result status then id; `statuses` filters by result status,
        where "pending" stands for jobs without a result."""
        where = ""
        if statuses is not None:
            where = f"WHERE coalesce(result, 'pending') IN ({', '.join('?' * len(statuses))})"
        query = f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY coalesce(result, 'pending'), job_id"
        with translated(self.path):
            for row in self._db.execute(query, tuple(statuses or ())):
                yield self._stored_job(row)

    def history(self, job_id: int) -> list[HistoryEntry]:
        """The job's recorded transitions, oldest first."""
        with translated(self.path):
            rows = self._db.execute(
                "SELECT from_status, to_status, at FROM transitions WHERE job_id = ?"
                " ORDER BY rowid",
                (job_id,),
            )
            try:
                return [history_entry(job_id, row) for row in rows]
            except DamagedRow as damage:
                raise self._damaged(str(damage)) from None

    def _stored_job(self, row: tuple[Any, ...]) -> StoredJob:
        try:
            return stored_job(row)
        except DamagedRow as damage:
            raise self._damaged(str(damage)) from None

    def _damaged(self, what: str) -> StateError:
        return StateError(f"state file {self.path} is damaged: {what}\nHINT: {MOVE_ASIDE}")
