"""`async-poller report`: what a state file knows, as an aligned table or as JSON lines.

The state file is opened read-only and without the run lock, so a report works while a run
is writing, and never creates or changes the file.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import orjson

from .._state.store import HistoryEntry, StateStore, StoredJob
from ..clock import rfc3339
from ..ids import parse_id
from ..outcome import ExitCode, FinalStatus
from .options import add_command

__all__ = ["REPORT_EXAMPLES", "add_parser", "run", "run_report"]

STATUSES: Final = (*FinalStatus, "pending")
"""What `--status` accepts: a result status, or "pending" for jobs without a result."""
REASON_WIDTH: Final = 40

REPORT_EXAMPLES: Final = """\
examples:
  # every job the state file knows, by status
  async-poller report --state /var/lib/ap/state.db

  # the audit trail: jobs that did not complete
  async-poller report --state state.db --status FAILED,UNKNOWN,TIMED_OUT

  # one job and its history of transitions
  async-poller report --state state.db --job 1234

  # machine-readable, one JSON object per job
  async-poller report --state state.db --format jsonl | jq -c 'select(.status == "FAILED")'

exit codes: 0 done, 1 --job names a job the state file does not know, 2 unusable state file
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = add_command(
        commands,
        "report",
        summary="show what a state file knows: statuses, history, the audit trail",
        description="Show every job in a state file with its status, timestamps and reason, "
        "or one job's history. Works while a run is in progress.",
        examples=REPORT_EXAMPLES,
        handler=run,
    )
    _add_arguments(report)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of `async-poller report` to `parser`."""
    parser.add_argument(
        "--state",
        type=Path,
        required=True,
        metavar="PATH",
        help="state file written by 'poll --state' (read only; safe while a run is going)",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--status",
        type=_statuses,
        metavar="S,...",
        help=f"only jobs whose latest result is one of these ({', '.join(STATUSES)})",
    )
    which.add_argument(
        "--job", type=_job_id, metavar="ID", help="one job, with its history of transitions"
    )
    parser.add_argument(
        "--format",
        choices=("table", "jsonl"),
        default="table",
        help="an aligned table for people (default), or one JSON object per line",
    )


def run(args: argparse.Namespace) -> int:
    try:
        code = run_report(args)
        sys.stdout.flush()  # inside the try: a reader gone (`| head`) is not an error
    except BrokenPipeError:
        from .output import silence  # not at the top: it loads structlog, and --help is fast

        silence(sys.stdout.buffer)
        return ExitCode.OK
    return code


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


def _statuses(text: str) -> frozenset[str]:
    chosen = set()
    for word in text.split(","):
        status = "pending" if word.strip().lower() == "pending" else word.strip().upper()
        if status not in STATUSES:
            raise argparse.ArgumentTypeError(
                f"unknown status {word!r}; choose from {', '.join(STATUSES)}"
            )
        chosen.add(status)
    return frozenset(chosen)


def _job_id(text: str) -> int:
    try:
        return parse_id(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"invalid job id {text!r}: {error}") from None


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
