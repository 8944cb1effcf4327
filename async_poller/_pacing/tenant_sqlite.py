"""The tenant's budget in a SQLite file that every process on the host shares.

Every process of a tenant keeps the same `PaceState` (the next request's slot, a pause the
server asked for, the adaptive rate) and the same sliding-window log in one SQLite file, and
lets a request leave only inside one short write transaction that checks and records it.
So pacing, the window and throttling hold across processes and across restarts: a run
started right after a `kill -9` sees what its predecessor spent in the last window.

A process holds nothing: a request in the log counts until it ends plus a window, or, if its
process died, until its latest possible end (`max_request_s`) plus a window.
"""

from __future__ import annotations

import math
import random
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from ..clock import Clock
from ..config import Rate
from ..logs import get_logger
from .pacer import EARLY, decide
from .tenant import SharedPacer

__all__ = ["SqlitePacer"]

_log = get_logger()

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS pace (
    tenant TEXT PRIMARY KEY,
    next_at REAL, paused_until REAL, refused_at REAL, cut_at REAL, signalled_at REAL
);
CREATE TABLE IF NOT EXISTS flight (
    id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, ends_by REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS flight_by_tenant ON flight (tenant, ends_by);
CREATE TABLE IF NOT EXISTS sharer (
    tenant TEXT NOT NULL, id TEXT NOT NULL, seen_at REAL NOT NULL, PRIMARY KEY (tenant, id)
);
"""
LEASE_S: Final = 0.05
"""At rates above 1/LEASE_S, the slots due within this many seconds are reserved in one
transaction (at most `MAX_LEASE`); below it, one slot per transaction."""
MAX_LEASE: Final = 256


class SqlitePacer(SharedPacer):
    """A pacer whose state lives in a SQLite file shared by every process of a tenant."""

    def __init__(
        self,
        path: Path,
        tenant: str,
        rate: Rate,
        clock: Clock,
        *,
        timeline: Callable[[], float],
        burst: int = 1,
        max_request_s: float = 60.0,
        on_failure: Callable[[str], None] = lambda reason: None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            rate, clock, timeline=timeline, burst=burst, max_request_s=max_request_s,
            on_failure=on_failure, rng=rng,
        )  # fmt: skip
        self._path = path
        self._tenant = tenant
        self._lease: deque[tuple[float, int]] = deque()  # slots reserved, not yet used
        self._tidied_at = -math.inf
        # Pacing alone lets at most this many requests into one window (each counts until
        # its latest end plus a window): below the limit, the log need not be counted.
        paced_most = rate.per_second * (rate.period + max_request_s) + burst
        self._window_may_fill = paced_most >= rate.limit
        self._db: sqlite3.Connection | None = None
        try:
            self._db = _open(path)
        except (sqlite3.Error, OSError) as error:
            self._fail(error)

    async def try_pass(self) -> float | None:
        if self._alone is not None:
            return await self._alone.try_pass()
        if self._lease and self._lease[0][0] + LEASE_S < self._timeline():
            self._give_back_lease()  # stale: its slots would count in the past
        if self._lease:
            return self._use_lease()
        try:
            wait = self._try_pass()
        except sqlite3.Error as error:
            self._fail(error)
            return await self.try_pass()
        return self._jittered(wait, self._timeline())

    def _use_lease(self) -> float | None:
        """Take the next slot reserved earlier, on time: no transaction, and no jitter, which
        would bring it closer to the slot after it."""
        now = self._timeline()
        reserved_at, row = self._lease[0]
        if now < reserved_at - EARLY:
            return reserved_at - now
        self._lease.popleft()
        self._in_flight.append(row)
        return None

    def _give_back_lease(self) -> None:
        self._ended.extend((row, None) for _, row in self._lease)
        self._lease.clear()

    def throttle(self, pause: float, *, sent_ago: float) -> None:
        if self._alone is not None:
            self._alone.throttle(pause, sent_ago=sent_ago)
            return
        now = self._timeline()
        try:
            with self._transaction():
                self._load()
                self._state.throttle(now, pause, now - sent_ago)
                self._save()
        except sqlite3.Error as error:
            self._fail(error)
            self.throttle(pause, sent_ago=sent_ago)

    async def aclose(self) -> None:
        """Record the ends of this process's last requests, and close the file."""
        if self._db is None:
            return
        self._give_back_lease()
        try:
            with self._transaction():
                self._flush_ended()
        except sqlite3.Error as error:
            _log.warning(
                "budget_store_not_updated",
                message="the ends of this run's last requests were not recorded: other runs count "
                "them as in flight until they age out",
                reason=str(error),
            )
        finally:
            self._db.close()
            self._db = None

    def _try_pass(self) -> float | None:
        now = self._timeline()
        period = self._rate.period
        with self._transaction() as db:
            self._flush_ended()
            self._load()
            self._tidy(now)
            in_window, first_end = 0, None
            if self._window_may_fill:
                in_window, first_end = db.execute(
                    "SELECT count(*), min(ends_by) FROM flight WHERE tenant = ? AND ends_by > ?",
                    (self._tenant, now - period),
                ).fetchone()
            oldest = math.inf if first_end is None else first_end + period
            at = decide(
                self._state, now, burst=self._burst, limit=self._rate.limit,
                in_window=in_window, oldest=oldest,
            )  # fmt: skip
            if at is None:
                rows = self._reserve(self._slots(now, in_window))
                self._in_flight.append(rows[0][1])
                self._lease.extend(rows[1:])
                self._save()
        return None if at is None else at - now

    def _slots(self, now: float, in_window: int) -> list[float]:
        """The times of the slots to reserve in one go: one, or at high rates as many as
        leave within `LEASE_S` (one transaction per request would cost more than the
        request itself)."""
        rate = self._state.pace.at(now)
        room = min(MAX_LEASE, int(self._rate.limit - in_window), int(rate * LEASE_S))
        slots = [now]
        self._state.passed(now)
        while len(slots) < room:
            at = max(now, self._state.next_at - (self._burst - 1) / rate)
            if at > now + LEASE_S:
                break
            slots.append(at)
            self._state.passed(at)
        return slots

    def _reserve(self, slots: list[float]) -> list[tuple[float, int]]:
        """Record `slots` in the log (one statement: this transaction holds the write lock,
        so the next row ids are ours to choose)."""
        assert self._db is not None
        (last,) = self._db.execute("SELECT coalesce(max(id), 0) FROM flight").fetchone()
        rows = [(at, last + n) for n, at in enumerate(slots, start=1)]
        self._db.executemany(
            "INSERT INTO flight (id, tenant, ends_by) VALUES (?, ?, ?)",
            [(row, self._tenant, at + self._max_request_s) for at, row in rows],
        )
        return rows

    def _tidy(self, now: float) -> None:
        """Say this process is here, forget sharers gone quiet and count the rest; a few
        times a window, also forget requests out of every window (the counting query
        needs no tidy log)."""
        assert self._db is not None
        period, tenant = self._rate.period, self._tenant
        if now >= self._tidied_at + period / 4:
            self._db.execute(
                "DELETE FROM flight WHERE tenant = ? AND ends_by + ? <= ?",
                (tenant, period, now),
            )
            self._tidied_at = now
        self._db.execute(
            "INSERT INTO sharer VALUES (?, ?, ?) "
            "ON CONFLICT (tenant, id) DO UPDATE SET seen_at = excluded.seen_at",
            (tenant, self._id, now),
        )
        self._db.execute(
            "DELETE FROM sharer WHERE tenant = ? AND seen_at + ? <= ?", (tenant, period, now)
        )
        (self._sharers,) = self._db.execute(
            "SELECT count(*) FROM sharer WHERE tenant = ?", (tenant,)
        ).fetchone()

    def _flush_ended(self) -> None:
        assert self._db is not None
        unused = [(row,) for row, end in self._ended if end is None]
        ends = [(end, row) for row, end in self._ended if end is not None]
        self._db.executemany("DELETE FROM flight WHERE id = ?", unused)
        self._db.executemany("UPDATE flight SET ends_by = ? WHERE id = ?", ends)
        self._ended.clear()

    def _load(self) -> None:
        assert self._db is not None
        found = self._db.execute(
            "SELECT next_at, paused_until, refused_at, cut_at, signalled_at "
            "FROM pace WHERE tenant = ?",
            (self._tenant,),
        ).fetchone()
        if found is None:
            return
        state, pace = self._state, self._state.pace
        next_at, paused_until, refused_at, cut_at, signalled_at = found
        state.next_at, state.paused_until = _time(next_at), _time(paused_until)
        pace.refused_at = refused_at if refused_at is not None else pace.ceiling
        pace.cut_at, pace.signalled_at = _time(cut_at), _time(signalled_at)

    def _save(self) -> None:
        assert self._db is not None
        state, pace = self._state, self._state.pace
        values = (state.next_at, state.paused_until, pace.refused_at, pace.cut_at)
        self._db.execute(
            "INSERT OR REPLACE INTO pace VALUES (?, ?, ?, ?, ?, ?)",
            (self._tenant, *map(_stored, values), _stored(pace.signalled_at)),
        )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _fail(self, error: BaseException) -> None:
        """Go on alone (`SharedPacer._go_alone`), and say so."""
        reason = self._go_alone(str(self._path), error)
        if self._db is not None:
            self._db.close()
            self._db = None
        self._on_failure(reason)

    def __repr__(self) -> str:
        where = "alone" if self._alone is not None else str(self._path)
        return f"SqlitePacer({where}, tenant={self._tenant[:8]}, sharers={self._sharers})"


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(SCHEMA)
    except BaseException:
        db.close()
        raise
    return db


def _time(value: float | None) -> float:
    return -math.inf if value is None else value


def _stored(value: float) -> float | None:
    return None if math.isinf(value) else value
