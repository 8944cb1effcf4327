"""Opening the state file safely: the run lock, access checks, and SQLite's errors turned
into a `StateError` that names the file and a way out. No SQL here (that is `store`)."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from ..errors import StateError, StateLocked

__all__ = ["MOVE_ASIDE", "check_access", "lock", "translated"]

MOVE_ASIDE: Final = "move it aside and run again (async-poller never overwrites it)"


def lock(path: Path) -> int:
    """Take the run lock on `PATH.lock`, recording our pid in it for the next run's message.

    The lock file is never deleted: unlinking it could let two runs lock different inodes.
    It is opened without following symlinks and must be a regular file of ours holding at
    most a pid, so a planted symlink or hard link can never get its target overwritten.
    """
    lock_path = path.with_name(path.name + ".lock")
    if not path.parent.is_dir():
        raise StateError(
            f"the directory of state file {path} does not exist\n"
            f"HINT: create it first (mkdir -p {path.parent})"
        )
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise StateError(
                f"lock file {lock_path} is a symbolic link: refusing to follow it\n"
                f"HINT: {_NOT_OURS}"
            ) from None
        raise StateError(
            f"cannot create lock file {lock_path}: {error.strerror}\n"
            "HINT: the state file's directory must be writable by you"
        ) from None
    try:
        _check_lock_file(fd, lock_path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            raise StateLocked(
                f"state file {path} is in use by another async-poller run (pid {holder})\n"
                "HINT: wait for that run to end; a killed run releases the lock at once"
            ) from None
        os.ftruncate(fd, 0)  # checked above: empty or a pid, and ours
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


_NOT_OURS: Final = "remove it if you did not create it; async-poller makes a fresh one"
_PID_LIMIT: Final = 32


def _check_lock_file(fd: int, lock_path: Path) -> None:
    """Refuse a lock file that is not a regular file of ours holding nothing but a pid."""
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "is not a regular file"
    elif info.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {info.st_uid})"
    elif info.st_nlink != 1:
        problem = "has other hard links"
    elif info.st_size > _PID_LIMIT or not _PID.fullmatch(os.pread(fd, _PID_LIMIT, 0)):
        problem = "holds something other than a pid"
    if problem is not None:
        raise StateError(f"lock file {lock_path} {problem}: refusing to use it\nHINT: {_NOT_OURS}")


_PID: Final = re.compile(rb"\s*(\d+\s*)?")


def check_access(path: Path, readonly: bool) -> None:
    """Fail with the operating system's reason before SQLite turns it into a vaguer one."""
    try:
        os.close(os.open(path, os.O_RDONLY if readonly else os.O_RDWR))
    except FileNotFoundError:
        if readonly:
            raise StateError(
                f"state file {path} does not exist\n"
                "HINT: check the path; 'async-poller poll --state PATH' creates it"
            ) from None
    except OSError as error:
        fix = "make it readable by you" if readonly else "a run reads and writes it: chmod u+rw"
        raise StateError(f"cannot open state file {path}: {error.strerror}\nHINT: {fix}") from None


@contextmanager
def translated(path: Path) -> Iterator[None]:
    """Turn SQLite's errors into a `StateError` that names the file and a way out."""
    try:
        yield
    except sqlite3.Error as error:
        code = getattr(error, "sqlite_errorcode", 0) & 0xFF
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            hint = f"it is damaged or not a database: {MOVE_ASIDE}"
        elif code == sqlite3.SQLITE_READONLY:
            hint = "the file or its directory is read-only: make both writable"
        elif code == sqlite3.SQLITE_FULL:
            hint = "the disk is full: free some space"
        else:
            hint = "check the file, its directory and their permissions"
        raise StateError(f"state file {path}: {error}\nHINT: {hint}") from error
