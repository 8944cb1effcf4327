"""`async-poller report`: what a state file knows, as an aligned table or as JSON lines.

The state file is opened read-only and without the run lock, so a report works while a run
is writing, and never creates or changes the file. The report itself is in `report_run`,
imported when it runs, so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from ..ids import parse_id
from ..outcome import ExitCode, FinalStatus
from .options import add_command

__all__ = ["REPORT_EXAMPLES", "STATUSES", "add_parser", "run"]

STATUSES: Final = (*FinalStatus, "pending")
"""What `--status` accepts: a result status, or "pending" for jobs without a result."""

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
    from .report_run import run_report

    try:
        code = run_report(args)
        sys.stdout.flush()  # inside the try: a reader gone (`| head`) is not an error
    except BrokenPipeError:
        from .output import silence  # not at the top: it loads structlog, and --help is fast

        silence(sys.stdout.buffer)
        return ExitCode.OK
    return code


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
