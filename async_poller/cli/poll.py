"""`async-poller poll`: its flags, help and examples. The polling is in `poll_run`, imported when
it runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import DEFAULT_BASE_URL, parse_duration, parse_rate
from .options import (
    add_command,
    add_logging_flags,
    add_progress_flags,
    argument,
    positive_float,
    positive_int,
)

__all__ = ["POLL_EXAMPLES", "add_parser", "run"]

POLL_EXAMPLES = """\
examples:
  # poll the ids in a file until every job is final; keep only the results
  async-poller poll ids.txt | jq -c 'select(.event == "result")'

  # some ids of a saved Agent Install response, picked with jq 1.7+ (1.6 rounds 64-bit ids,
  # and a rounded id can be another job's)
  jq '[.data[] | select(.cloudProvider == "AWS") | .id]' response.json | async-poller poll -

  # from cron every 10 minutes: resume from a state file, stop before the next run
  */10 * * * * async-poller poll --state /var/lib/ap/state.db --deadline 9m /etc/ap/ids.txt

  # block a CI step until the installs are done (exit 0 only if all COMPLETED)
  async-poller poll --deadline 45m ids.txt > events.jsonl || exit 1

credentials (one of, first found wins):
  --token-command CMD, --refresh-token-file PATH,
  LUCIDITY_REFRESH_TOKEN, LUCIDITY_ACCESS_TOKEN (environment)

environment: LUCIDITY_BASE_URL (--base-url), ASYNC_POLLER_BUDGET_STORE (--budget-store)

exit codes:
  0 all COMPLETED   1 some FAILED or CANCELLED   2 usage or input error
  3 incomplete (deadline, --once, NOT_FOUND, UNKNOWN, ERROR)
  4 authentication failed   5 state file locked
  6 answer refused for safety (TLS failure, redirect)
  74 events could not be written (disk full)   129/130/143 SIGHUP/SIGINT/SIGTERM
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `poll` and all its flags."""
    poll = add_command(
        commands,
        "poll",
        summary="poll job ids until every job is final",
        description="Poll every job id until it is final or the deadline passes. stdout gets "
        "one JSON event per line (start, transition, result, poll_error, throttled, "
        "invalid_input, summary) and nothing else; logs, progress and heartbeats go to stderr.",
        examples=POLL_EXAMPLES,
        handler=run,
    )
    poll.add_argument(
        "sources", nargs="*", metavar="SOURCE", help="file of job ids, or - for stdin (default)"
    )
    _add_input(poll.add_argument_group("input"))
    _add_api(poll.add_argument_group("API and credentials"))
    _add_pacing(poll.add_argument_group("pacing"))
    runs = poll.add_argument_group("across runs (cron)")
    runs.add_argument(
        "--state",
        type=Path,
        metavar="PATH",
        help="SQLite state file: skip jobs already final, report only changes, keep history",
    )
    runs.add_argument(
        "--metrics-file",
        type=Path,
        metavar="PATH",
        help="write Prometheus text-format metrics here at the end (textfile collector)",
    )
    output = poll.add_argument_group("output (events on stdout; everything else on stderr)")
    output.add_argument(
        "--output", type=Path, metavar="PATH", help="append events to PATH instead of stdout"
    )
    add_logging_flags(output)
    add_progress_flags(output, heartbeat=True)
    testing = poll.add_argument_group("testing against the simulator")
    testing.add_argument(
        "--time-scale",
        type=positive_float,
        default=1.0,
        metavar="X",
        help="run the clock X times faster, to match 'async-poller simulate --time-scale X' "
        "(default: 1)",
    )
    testing.add_argument(
        "--seed", type=int, metavar="N", help="seed the jitter, for reproducible runs"
    )


def _add_input(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--id", dest="ids", action="append", default=[], metavar="N", help="a job id (repeatable)"
    )
    group.add_argument(
        "--input-format",
        choices=("auto", "text", "json"),
        default="auto",
        help="text: one id per line; json: an array of ids or a saved Agent Install "
        "response; auto: json if the input starts with [ or { (default: %(default)s)",
    )
    group.add_argument(
        "--skip-invalid",
        action="store_true",
        help="poll the valid ids and report bad lines as invalid_input events "
        "(default: any bad line is an error, exit 2)",
    )


def _add_api(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--base-url",
        metavar="URL",
        help=f"API host (env LUCIDITY_BASE_URL; default: {DEFAULT_BASE_URL})",
    )
    group.add_argument(
        "--refresh-token-file",
        type=Path,
        metavar="PATH",
        help="read the refresh token from PATH (must not be group/world-readable)",
    )
    group.add_argument(
        "--token-command",
        metavar="CMD",
        help="a command that prints an access token; run again when it expires or on a 401",
    )
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow plain http:// to a non-loopback host (tokens travel unencrypted)",
    )
    group.add_argument("--ca-bundle", metavar="PATH", help="extra CA certificates (PEM) to trust")


def _add_pacing(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--concurrency",
        type=positive_int,
        default=8,
        metavar="N",
        help="max requests in flight (default: 8)",
    )
    group.add_argument(
        "--rate",
        type=argument(parse_rate),
        default=parse_rate("45/min"),
        metavar="N/UNIT",
        help="request budget: requests paced evenly, one per UNIT/N, and at most N in any "
        "sliding window of one UNIT (s, min, h); every request counts; every 429 or 503 "
        "lowers the rate in force, which recovers smoothly (default: 45/min)",
    )
    group.add_argument(
        "--burst",
        type=positive_int,
        default=1,
        metavar="B",
        help="requests that may leave at once after an idle spell, before pacing resumes; "
        "1 suits every server limiter, leaky buckets included (default: 1)",
    )
    group.add_argument(
        "--budget-store",
        metavar="STORE",
        help="where every async-poller process of the same tenant (base URL and credential) "
        "shares the budget: a SQLite file's PATH on this machine, or a Redis server's URL, "
        "redis://[:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS), for pollers on several "
        "machines (pip install 'async-poller[redis]'; their clocks NTP-synced); auto = "
        "$XDG_STATE_HOME/async-poller/budget.db (~/.local/state/...); none = this process's "
        "own budget (default: $ASYNC_POLLER_BUDGET_STORE, else auto; a URL with a password "
        "belongs in that variable, as ps shows every command line to every user)",
    )
    group.add_argument(
        "--thrifty",
        action="store_true",
        help="poll by backoff alone: fewer requests, but results seen later; by default, "
        "while the budget has room, no job waits longer than one round of all unfinished "
        "jobs at the budget's rate",
    )
    for flag, default, text in (
        ("--min-delay", "10s", "shortest delay between two polls of one job"),
        ("--max-delay", "2m", "longest delay between two polls of one job"),
        ("--deadline", "1h", "jobs not final by then end TIMED_OUT"),
        ("--request-timeout", "10s", "timeout of one request"),
    ):
        group.add_argument(
            flag,
            type=argument(parse_duration),
            default=parse_duration(default),
            metavar="D",
            help=f"{text} (default: {default})",
        )
    group.add_argument(
        "--once", action="store_true", help="check each job once and exit (3 while any is pending)"
    )


def run(args: argparse.Namespace) -> int:
    from .poll_run import run_poll

    return run_poll(args)
