"""The report a state file gives (`async-poller report`): an aligned table, one job with its
history, or JSON lines."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any, Final

import orjson

from .._state.store import HistoryEntry, StateStore, StoredJob
from ..clock import rfc3339
from .report import STATUSES

__all__ = ["run_report"]

REASON_WIDTH: Final = 40


def run_report(args: argparse.Namespace) -> int:
    """Print the report that `args` asks for; returns the exit code.

    An unusable state file raises `StateError`, a `ConfigError` the CLI turns into exit 2.
    """
    with StateStore.open(args.state, readonly=True) as store:
        if args.job is None:
            jobs = store.jobs(args.status)
            if args.format == "jsonl":
                _write_lines(_job_record(job) for job in jobs)
            else:
                _write_table(jobs)
            return 0
        job = store.load([args.job]).get(args.job)
        if job is None:
            print(f"async-poller: job {args.job} is not in {args.state}", file=sys.stderr)
            return 1
        history = store.history(args.job)
    if args.format == "jsonl":
        _write_lines([{**_job_record(job), "history": [_entry_record(e) for e in history]}])
    else:
        _write_job(job, history)
    return 0


def _job_record(job: StoredJob) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "status": job.result or "pending",
        "last_status": job.status,
        "polls": job.polls,
        "first_seen": rfc3339(job.first_seen),
        "last_seen": rfc3339(job.last_seen),
        "result_at": None if job.result_at is None else rfc3339(job.result_at),
        "reason": job.reason,
        "details": job.details,
        "event_id": job.event_id,
        "emitted": job.emitted,
    }


def _entry_record(entry: HistoryEntry) -> dict[str, Any]:
    return {"at": rfc3339(entry.at), "from": entry.from_status, "to": entry.to_status}


def _write_lines(records: Iterable[dict[str, Any]]) -> None:
    for record in records:
        sys.stdout.write(orjson.dumps(record).decode() + "\n")


def _write_table(jobs: Iterable[StoredJob]) -> None:
    header = ("JOB_ID", "STATUS", "LAST_STATUS", "POLLS", "FIRST_SEEN", "LAST_SEEN", "REASON")
    rows = [
        (
            str(job.job_id),
            job.result or "pending",
            job.status or "-",
            str(job.polls),
            _second(job.first_seen),
            _second(job.last_seen),
            _printable(job.reason or "", REASON_WIDTH),
        )
        for job in jobs
    ]
    if rows:
        widths = [max(map(len, column)) for column in zip(header, *rows, strict=True)]
        for row in (header, *rows):
            cells = [
                cell.rjust(width) if i in (0, 3) else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            sys.stdout.write("  ".join(cells).rstrip() + "\n")
        sys.stdout.write("\n")
    counts = Counter(row[1] for row in rows)
    by_status = ", ".join(f"{status} {counts[status]}" for status in STATUSES if counts[status])
    sys.stdout.write(f"{len(rows)} jobs" + (f": {by_status}" if by_status else "") + "\n")


def _write_job(job: StoredJob, history: list[HistoryEntry]) -> None:
    details = "-" if job.details is None else orjson.dumps(job.details).decode()
    fields = {
        "job": str(job.job_id),
        "status": job.result or "pending",
        "last status": job.status or "-",
        "polls": str(job.polls),
        "first seen": rfc3339(job.first_seen),
        "last seen": rfc3339(job.last_seen),
        "result at": "-" if job.result_at is None else rfc3339(job.result_at),
        "reason": _printable(job.reason or "-"),
        "details": _printable(details),
        "event id": job.event_id or "-",
        "emitted": "yes" if job.emitted else "no",
    }
    for name, value in fields.items():
        sys.stdout.write(f"{name:<12}{value}\n")
    sys.stdout.write("\nhistory:\n" if history else "\nno transitions recorded\n")
    for entry in history:
        sys.stdout.write(
            f"  {rfc3339(entry.at)}  {entry.from_status or '-':<10}  ->  {entry.to_status}\n"
        )


def _second(wall: float) -> str:
    """RFC 3339 to the second, short enough for a table column."""
    return rfc3339(wall)[:19] + "Z"


def _printable(text: str, width: int | None = None) -> str:
    """`text` on one line without control characters (the API wrote it, not us), cut to
    `width` characters."""
    flat = "".join(char if char.isprintable() else " " for char in text)
    if width is not None and len(flat) > width:
        return flat[: width - 3] + "..."
    return flat
