"""The state store: round trips, finality, emission tracking, locking, crashes and damage."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from async_poller._state.store import (
    SCHEMA_VERSION,
    HistoryEntry,
    StateError,
    StateLocked,
    StateStore,
    StoredJob,
)
from async_poller.events import event_id
from async_poller.ids import MAX_ID
from async_poller.outcome import ACTIVE, TERMINAL, FinalStatus

from .helpers import examples

T0 = 1_800_000_000.0


def _file_modes_bind_us() -> bool:
    """False where file modes do not stop this process (root, CAP_DAC_OVERRIDE)."""
    with tempfile.TemporaryDirectory() as directory:
        probe = Path(directory) / "probe"
        probe.touch(mode=0o444)
        try:
            os.close(os.open(probe, os.O_WRONLY))
        except PermissionError:
            return True
        return False


MODES_BIND = _file_modes_bind_us()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where the state file goes."""
    return tmp_path / "state.db"


def finish(store: StateStore, job_id: int, status: str, at: float = T0, **kw: Any) -> None:
    store.record_result(job_id, status, at, event_id=event_id(job_id, status), **kw)


# Round trip ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
polls = st.tuples(st.just("poll"), st.none() | st.sampled_from(sorted(ACTIVE | TERMINAL)))
results = st.tuples(
    st.just("result"),
    st.sampled_from(list(FinalStatus)),
    st.none() | st.text(max_size=20),
    json_values,
)
histories = st.dictionaries(
    st.integers(1, MAX_ID), st.lists(polls | results, min_size=1, max_size=8), max_size=6
)


@dataclass
class Model:
    """What the store should hold after a sequence of calls, computed the plain way."""

    job_id: int
    job: dict[str, Any] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)

    def apply(self, step: tuple[Any, ...], at: float) -> None:
        if step[0] == "result" and self.job.get("result") in TERMINAL:
            return  # a final result ignores every later one
        self.job.setdefault("first_seen", at)
        self.job["last_seen"] = at
        if step[0] == "poll":
            self.job["polls"] = self.job.get("polls", 0) + 1
            status, previous = step[1], self.job.get("status")
            if status is not None and status != previous:
                self.history.append(HistoryEntry(previous, status, at))
                self.job["status"] = status
        else:
            _, status, reason, details = step
            self.job |= {"result": status, "result_at": at, "reason": reason}
            self.job |= {"details": details, "event_id": event_id(0, status), "emitted": False}

    def expected(self) -> StoredJob:
        empty = dict.fromkeys(["status", "result", "result_at", "reason", "details", "event_id"])
        return StoredJob(**{"polls": 0, "emitted": False, **empty, **self.job}, job_id=self.job_id)


def record(store: StateStore, job_id: int, step: tuple[Any, ...], at: float) -> None:
    """Make the store call that `step` stands for."""
    if step[0] == "poll":
        store.record_poll(job_id, at, step[1])
    else:
        _, status, reason, details = step
        eid = event_id(0, status)
        store.record_result(job_id, status, at, event_id=eid, reason=reason, details=details)


@settings(max_examples=examples(60), deadline=None)
@given(histories)
def test_round_trip_matches_a_plain_model(steps_by_job: dict[int, list[tuple[Any, ...]]]) -> None:
    """Whatever sequence of polls and results is recorded, a reopened store loads it back."""
    models = [Model(job_id) for job_id in steps_by_job]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "state.db"
        with StateStore.open(path) as store:
            for model in models:
                for n, step in enumerate(steps_by_job[model.job_id]):
                    model.apply(step, T0 + n)
                    record(store, model.job_id, step, T0 + n)
        with StateStore.open(path, readonly=True) as store:
            loaded = store.load([*steps_by_job, MAX_ID - 7])
            assert {model.job_id: model.expected() for model in models} == loaded
            assert [model.history for model in models] == [
                store.history(model.job_id) for model in models
            ]


def test_new_file_gets_the_current_schema_in_wal_mode(path: Path) -> None:
    """A missing state file is created with the current schema version, in WAL mode."""
    StateStore.open(path).close()
    db = sqlite3.connect(path)
    assert SCHEMA_VERSION == db.execute("PRAGMA user_version").fetchone()[0]
    assert "wal" == db.execute("PRAGMA journal_mode").fetchone()[0]
    db.close()


def test_an_empty_file_is_initialised(path: Path) -> None:
    """A zero-byte file is an empty SQLite database, so it becomes a state file."""
    path.touch()
    with StateStore.open(path) as store:
        assert {} == store.load([1])


# Finality, transitions, emission -----------------------------------------------------------


def test_a_final_result_never_changes(path: Path) -> None:
    """Once COMPLETED, FAILED or CANCELLED, later results of any kind are ignored."""
    with StateStore.open(path) as store:
        finish(store, 1, "FAILED", reason="disk full", details={"host": "a"})
        finish(store, 1, "COMPLETED", at=T0 + 1)
        finish(store, 1, "TIMED_OUT", at=T0 + 2)
        job = store.load([1])[1]
    assert ("FAILED", T0, "disk full") == (job.result, job.result_at, job.reason)
    assert {"host": "a"} == job.details
    assert job.final


def test_a_non_final_result_is_replaced_by_the_next(path: Path) -> None:
    """TIMED_OUT is kept for the audit trail but not final, so a later result replaces it."""
    with StateStore.open(path) as store:
        finish(store, 1, "TIMED_OUT")
        assert not store.load([1])[1].final
        finish(store, 1, "COMPLETED", at=T0 + 600)
        job = store.load([1])[1]
    assert ("COMPLETED", T0 + 600, True) == (job.result, job.result_at, job.final)


def test_transitions_are_relative_to_the_stored_status_across_runs(path: Path) -> None:
    """A new run that sees the stored status again records no transition."""
    with StateStore.open(path) as store:
        assert store.record_poll(1, T0, "QUEUED")
    with StateStore.open(path) as store:
        assert not store.record_poll(1, T0 + 60, "QUEUED")
        assert not store.record_poll(1, T0 + 70, None)
        assert store.record_poll(1, T0 + 80, "PROCESSING")
        assert [
            HistoryEntry(None, "QUEUED", T0),
            HistoryEntry("QUEUED", "PROCESSING", T0 + 80),
        ] == store.history(1)
        assert (4, "PROCESSING") == (store.load([1])[1].polls, store.load([1])[1].status)


def test_unknown_and_invented_statuses_are_refused(path: Path) -> None:
    """UNKNOWN is not a lifecycle status (it is recorded as None), and results must be real."""
    with StateStore.open(path) as store:
        with pytest.raises(ValueError, match="UNKNOWN"):
            store.record_poll(1, T0, "UNKNOWN")
        with pytest.raises(ValueError, match="DONE"):
            finish(store, 1, "DONE")
        assert {} == store.load([1])


def test_emission_is_recorded_and_reset_by_a_new_result(path: Path) -> None:
    """A stored result starts unemitted, `mark_emitted` records it, a new result resets it."""
    with StateStore.open(path) as store:
        finish(store, 1, "TIMED_OUT")
        finish(store, 2, "COMPLETED")
        assert [False, False] == [job.emitted for job in store.load([1, 2]).values()]
        store.mark_emitted([1, 2])
        assert [True, True] == [job.emitted for job in store.load([1, 2]).values()]
        finish(store, 1, "NOT_FOUND")
        assert not store.load([1])[1].emitted


def test_batch_commits_at_the_end_and_rolls_back_on_error(path: Path) -> None:
    """Calls inside `batch()` commit together, or not at all if the block raises."""
    with StateStore.open(path) as store:

        def fail_midway() -> None:
            with store.batch():
                store.record_poll(1, T0, "QUEUED")
                finish(store, 2, "COMPLETED")
                raise RuntimeError("midway")

        with pytest.raises(RuntimeError, match="midway"):
            fail_midway()
        assert {} == store.load([1, 2])
        with store.batch():
            store.record_poll(1, T0, "QUEUED")
            finish(store, 2, "COMPLETED")
        assert [1, 2] == sorted(store.load([1, 2]))


def test_load_handles_more_ids_than_one_query_takes(path: Path) -> None:
    """Loading thousands of ids returns exactly the stored ones."""
    with StateStore.open(path) as store, store.batch():
        for job_id in range(1, 3001, 2):
            store.record_poll(job_id, T0, "QUEUED")
    with StateStore.open(path) as store:
        assert list(range(1, 3001, 2)) == sorted(store.load(range(1, 3001)))


def test_jobs_are_listed_by_status_and_filtered(path: Path) -> None:
    """`jobs()` orders by result status then id; "pending" selects jobs without a result."""
    with StateStore.open(path) as store:
        store.record_poll(5, T0, "PROCESSING")
        finish(store, 4, "FAILED")
        finish(store, 3, "COMPLETED")
        finish(store, 2, "FAILED")
        assert [3, 2, 4, 5] == [job.job_id for job in store.jobs()]
        assert [2, 4, 5] == [job.job_id for job in store.jobs({"FAILED", "pending"})]


# Locking and crashes ---------------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from async_poller._state.store import StateStore
store = StateStore.open(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(60)
"""

WRITE_FOREVER = """
import itertools, sys
from pathlib import Path
from async_poller._state.store import StateStore
store = StateStore.open(Path(sys.argv[1]))
for n in itertools.count(1):
    store.record_poll(1, float(n), "QUEUED" if n % 2 else "PROCESSING")
    store.record_result(n + 1, "COMPLETED", float(n), event_id=str(n))
    print(n, flush=True)
"""


@pytest.fixture
def child() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by a test, killed at its end whatever happened."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.kill()
        process.communicate()  # reaps the process and closes its pipe


def spawn(started: list[subprocess.Popen[str]], code: str, path: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    started.append(process)
    return process


def test_a_second_open_is_refused_while_the_first_holds_the_lock(path: Path) -> None:
    """Two writers never share a state file; the lock is free again after close."""
    first = StateStore.open(path)
    with pytest.raises(
        StateLocked, match=rf"in use by another async-poller run \(pid {os.getpid()}\)"
    ):
        StateStore.open(path)
    first.close()
    StateStore.open(path).close()


def test_a_symlink_planted_as_the_lock_file_is_refused_and_its_target_untouched(
    path: Path, tmp_path: Path
) -> None:
    """`STATE.lock -> victim`: the open fails with a clear error and the victim keeps its
    content (the lock is opened with O_NOFOLLOW, never truncating what it did not create)."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path.with_name(path.name + ".lock").symlink_to(victim)
    with pytest.raises(StateError, match="is a symbolic link"):
        StateStore.open(path)
    assert "precious\n" == victim.read_text()
    assert not path.exists()


@pytest.mark.parametrize(
    ("plant", "problem"),
    [
        (lambda lock, victim: os.link(victim, lock), "has other hard links"),
        (lambda lock, victim: lock.write_text("precious\n"), "something other than a pid"),
        (lambda lock, victim: lock.mkdir(), "cannot create lock file|not a regular file"),
    ],
    ids=["hard-link", "foreign-content", "directory"],
)
def test_a_lock_file_that_is_not_ours_is_never_overwritten(
    path: Path, tmp_path: Path, plant: Any, problem: str
) -> None:
    """A hard link to another file, a file with other content, or a directory in the lock
    file's place: refused, and nothing is truncated or written."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    lock = path.with_name(path.name + ".lock")
    plant(lock, victim)
    with pytest.raises(StateError, match=problem):
        StateStore.open(path)
    assert "precious\n" == victim.read_text()
    if lock.is_file():
        assert "precious\n" == lock.read_text()


def test_a_lock_file_left_by_an_earlier_run_is_reused(path: Path) -> None:
    """The pid a finished run left in the lock file is replaced by ours."""
    path.with_name(path.name + ".lock").write_text("999999\n")
    StateStore.open(path).close()
    assert f"{os.getpid()}\n" == path.with_name(path.name + ".lock").read_text()


def test_a_lock_held_by_a_killed_process_is_free_again(
    path: Path, child: list[subprocess.Popen[str]]
) -> None:
    """SIGKILL leaves no stale lock: the kernel releases the flock with the process."""
    holder = spawn(child, HOLD, path)
    assert holder.stdout is not None
    assert "locked\n" == holder.stdout.readline()
    with pytest.raises(StateLocked, match="HINT"):
        StateStore.open(path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    StateStore.open(path).close()


def test_a_kill_at_any_moment_loses_nothing_committed(
    path: Path, child: list[subprocess.Popen[str]]
) -> None:
    """After SIGKILL mid-write, every acknowledged record is there, polls and history agree."""
    writer = spawn(child, WRITE_FOREVER, path)
    assert writer.stdout is not None
    acknowledged = 0
    while acknowledged < 300:
        acknowledged = int(writer.stdout.readline())
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    with StateStore.open(path) as store:
        job = store.load([1])[1]
        assert job.polls >= acknowledged
        assert job.polls == len(store.history(1))
        finals = store.load(range(2, job.polls + 2))
        assert set(range(2, acknowledged + 2)) <= set(finals), "an acknowledged result is lost"
        assert all(stored.final for stored in finals.values())
        assert len(finals) >= acknowledged


def test_a_reader_sees_committed_data_while_a_run_holds_the_lock(path: Path) -> None:
    """Read-only opens take no lock, so `report` works during a run."""
    with StateStore.open(path) as writer:
        finish(writer, 1, "COMPLETED")
        with StateStore.open(path, readonly=True) as reader:
            assert "COMPLETED" == reader.load([1])[1].result
            finish(writer, 2, "FAILED")
            assert "FAILED" == reader.load([2])[2].result


# Damage --------------------------------------------------------------------------------------


def assert_refused(path: Path, *patterns: str, readonly: bool = False) -> None:
    """Opening `path` fails with a StateError naming it and giving a HINT, file unchanged."""
    before = fingerprint(path)
    with pytest.raises(StateError) as caught:
        StateStore.open(path, readonly=readonly)
    message = str(caught.value)
    assert str(path) in message
    assert "\nHINT: " in message
    for pattern in patterns:
        assert pattern in message
    assert before == fingerprint(path)


def fingerprint(path: Path) -> tuple[int, int, int] | None:
    """Inode, size and modification time: a recreated, truncated or rewritten file differs.

    (Stat rather than contents, so that an unreadable file can be compared too.)
    """
    if not path.is_file():
        return None
    status = path.stat()
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def test_a_file_that_is_not_a_database_is_refused_untouched(path: Path) -> None:
    """Garbage in the state file is an error, and the file is neither truncated nor rewritten."""
    path.write_bytes(b"these are not the bytes you are looking for\n" * 100)
    assert_refused(path, "not a database")


def test_a_database_with_damaged_pages_is_refused(path: Path) -> None:
    """Corruption past the header is found when opening, before any poll."""
    with StateStore.open(path) as store, store.batch():
        for job_id in range(1, 2000):
            finish(store, job_id, "COMPLETED", reason="x" * 50)
    data = bytearray(path.read_bytes())
    data[4096 * 3 : 4096 * 6] = b"\xa5" * (4096 * 3)
    path.write_bytes(bytes(data))
    assert_refused(path, "damaged")


def test_a_newer_schema_is_refused(path: Path) -> None:
    """A state file from a newer async-poller is not touched by this one."""
    StateStore.open(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    assert_refused(path, "newer", "upgrade async-poller")
    assert_refused(path, "newer", readonly=True)


def test_another_applications_database_is_refused(path: Path) -> None:
    """An SQLite file that is not ours is never migrated into one."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER)")
    db.commit()
    db.close()
    assert_refused(path, "not an async-poller state file")


def test_a_directory_or_a_missing_directory_is_refused(tmp_path: Path) -> None:
    """A directory is not a state file, and a missing parent directory is not created."""
    assert_refused(tmp_path, "is a directory")
    assert_refused(tmp_path / "nowhere" / "state.db", "mkdir -p")
    assert not (tmp_path / "nowhere").exists()


def test_a_missing_file_is_not_created_by_a_reader(path: Path) -> None:
    """Read-only opens (report) never create the state file."""
    assert_refused(path, "does not exist", readonly=True)
    assert not path.exists()


@pytest.fixture
def read_only(path: Path) -> Iterator[Path]:
    """An existing state file this process cannot write: chmod, or `chattr +i` for root
    (whom file modes do not stop) where the file system supports it."""
    StateStore.open(path).close()
    if MODES_BIND:
        path.chmod(0o444)
        yield path
        return
    chattr = shutil.which("chattr")
    if (
        chattr is None
        or subprocess.run([chattr, "+i", path], check=False, stderr=subprocess.DEVNULL).returncode
    ):
        pytest.skip("file modes do not bind root, and chattr +i is unavailable here")
    try:
        yield path
    finally:
        subprocess.run([chattr, "-i", path], check=True)


def test_a_read_only_file_is_refused_for_writing(read_only: Path) -> None:
    """A run needs to write its state file; a read-only one is an error up front."""
    assert_refused(read_only, "cannot open state file", "a run reads and writes it")


def test_a_read_only_file_can_still_be_reported(read_only: Path) -> None:
    """Reading needs no write access to the state file itself."""
    with StateStore.open(read_only, readonly=True) as store:
        assert [] == list(store.jobs())


@pytest.mark.skipif(not MODES_BIND, reason="this process (root) reads any file whatever its mode")
def test_an_unreadable_file_is_refused(path: Path) -> None:
    """A state file we may not read is an error naming the file."""
    StateStore.open(path).close()
    path.chmod(0)
    assert_refused(path, "Permission denied", readonly=True)
