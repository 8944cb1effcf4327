"""The command line: argument parsing -> Config -> run, and exit codes. A thin shell.

Heavy modules (aiohttp and everything that polls) are imported inside the commands, so
`--help` and `--version` start fast.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .config import DEFAULT_BASE_URL, Config, Credentials, parse_duration, parse_rate
from .errors import ConfigError, InputError, StateLocked
from .outcome import ExitCode
from .redact import Secret

if TYPE_CHECKING:
    from .clock import Clock
    from .ids import JobIds

__all__ = ["main"]

PROG = "async-poller"
MAX_LISTED_INVALID = 20

POLL_EXAMPLES = """\
examples:
  # poll the ids in a file until every job is final; keep only the results
  async-poller poll ids.txt | jq -c 'select(.event == "result")'

  # ids from a saved Agent Install response, through jq and stdin
  jq '[.data[].id]' install-response.json | async-poller poll -

  # from cron every 10 minutes: resume from a state file, stop before the next run
  */10 * * * * async-poller poll --state /var/lib/ap/state.db --deadline 9m /etc/ap/ids.txt

  # block a CI step until the installs are done (exit 0 only if all COMPLETED)
  async-poller poll --deadline 45m ids.txt > events.jsonl || exit 1

credentials (one of, first found wins):
  --token-command CMD, --refresh-token-file PATH,
  LUCIDITY_REFRESH_TOKEN, LUCIDITY_ACCESS_TOKEN (environment)

exit codes:
  0 all COMPLETED   1 some FAILED or CANCELLED   2 usage or input error
  3 incomplete (deadline, --once, NOT_FOUND, UNKNOWN, ERROR)
  4 authentication failed   5 state file locked   130/143 interrupted
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (ConfigError, InputError) as error:
        _fail(error)
        return ExitCode.USAGE
    except StateLocked as error:
        _fail(error)
        return ExitCode.LOCKED


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every command, every flag, with help)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Poll many Lucidity agent-install jobs at once and stream JSON-lines events.",
        epilog="Run 'async-poller COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {version('async-poller')}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_poll(commands)
    _add_report(commands)
    _add_simulate(commands)
    _add_demo(commands)
    return parser


def _add_poll(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    poll = commands.add_parser(
        "poll",
        help="poll job ids until every job is final",
        description="Poll every job id until it is final or the deadline passes; write one JSON "
        "event per line to stdout (start, transition, result, poll_error, throttled, "
        "invalid_input, summary).",
        epilog=POLL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    poll.set_defaults(handler=_run_poll)
    poll.add_argument(
        "sources", nargs="*", metavar="SOURCE", help="file of job ids, or - for stdin (default)"
    )
    source = poll.add_argument_group("input")
    source.add_argument(
        "--id", dest="ids", action="append", default=[], metavar="N", help="a job id (repeatable)"
    )
    source.add_argument(
        "--input-format",
        choices=("auto", "text", "json"),
        default="auto",
        help="text: one id per line; json: an array of ids or a saved Agent Install "
        "response; auto: json if the input starts with [ or { (default: %(default)s)",
    )
    source.add_argument(
        "--skip-invalid",
        action="store_true",
        help="poll the valid ids and report bad lines as invalid_input events "
        "(default: any bad line is an error, exit 2)",
    )
    api = poll.add_argument_group("API and credentials")
    api.add_argument(
        "--base-url",
        default=os.environ.get("LUCIDITY_BASE_URL", DEFAULT_BASE_URL),
        help="API host (env LUCIDITY_BASE_URL; default: %(default)s)",
    )
    api.add_argument(
        "--refresh-token-file",
        type=Path,
        metavar="PATH",
        help="read the refresh token from PATH (must not be group/world-readable)",
    )
    api.add_argument(
        "--token-command",
        metavar="CMD",
        help="a command that prints an access token; run again when it expires or on a 401",
    )
    api.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow plain http:// to a non-loopback host (tokens travel unencrypted)",
    )
    api.add_argument("--ca-bundle", metavar="PATH", help="extra CA certificates (PEM) to trust")
    pace = poll.add_argument_group("pacing")
    pace.add_argument(
        "--concurrency", type=_positive_int, default=8, help="max requests in flight (default: 8)"
    )
    pace.add_argument(
        "--rate",
        type=_argument(parse_rate),
        default=parse_rate("45/min"),
        metavar="N/UNIT",
        help="request budget: at most N requests in any sliding window of one UNIT "
        "(s, min, h); every request counts (default: 45/min)",
    )
    for flag, default, text in (
        ("--min-delay", "10s", "shortest delay between two polls of one job"),
        ("--max-delay", "2m", "longest delay between two polls of one job"),
        ("--deadline", "1h", "jobs not final by then end TIMED_OUT"),
        ("--request-timeout", "10s", "timeout of one request"),
    ):
        pace.add_argument(
            flag,
            type=_argument(parse_duration),
            default=parse_duration(default),
            metavar="D",
            help=f"{text} (default: {default})",
        )
    pace.add_argument(
        "--once", action="store_true", help="check each job once and exit (3 while any is pending)"
    )
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
    output = poll.add_argument_group("output")
    output.add_argument(
        "--output", type=Path, metavar="PATH", help="append events to PATH instead of stdout"
    )
    _add_logging_flags(output)
    testing = poll.add_argument_group("testing against the simulator")
    testing.add_argument(
        "--time-scale",
        type=_positive_float,
        default=1.0,
        metavar="X",
        help="run the clock X times faster; only for 'async-poller simulate --time-scale X'",
    )
    testing.add_argument("--seed", type=int, help="seed the jitter, for reproducible runs")


def _add_report(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .report import REPORT_EXAMPLES, add_report_arguments

    report = commands.add_parser(
        "report",
        help="show what a state file knows: statuses, history, the audit trail",
        description="Show every job in a state file with its status, timestamps and reason; "
        "or one job's history. Works while a run is in progress.",
        epilog=REPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_report_arguments(report)
    report.set_defaults(handler=_run_report)


def _add_simulate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .simulator.options import add_simulate_arguments

    simulate = commands.add_parser(
        "simulate",
        help="run the built-in Lucidity API simulator",
        description="Serve a simulated Lucidity API (status, install and token endpoints, "
        "rate limit, job lifecycles, faults, scaled time). Prints its base URL and a "
        "refresh token.",
        epilog="examples:\n"
        "  async-poller simulate --port 8080 --time-scale 60\n"
        "  async-poller simulate --jobs 20 --fault-rate http_503=0.1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_simulate_arguments(simulate)
    simulate.set_defaults(handler=_run_simulate)


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="poll ~50 simulated jobs end to end (no account needed)",
        description="Start the simulator in-process, create jobs through its install "
        "endpoint and poll them to the end in scaled time: real events on stdout, a short "
        "summary on stderr.",
        epilog="examples:\n"
        "  async-poller demo\n"
        "  async-poller demo | jq -c 'select(.event == \"result\")'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--jobs", type=_positive_int, default=50, help="jobs to create (default: 50)")
    demo.add_argument("--seed", type=int, default=7, help="simulator seed (default: 7)")
    demo.add_argument(
        "--time-scale",
        type=_positive_float,
        default=60.0,
        metavar="X",
        help="simulated seconds per real second (default: 60)",
    )
    _add_logging_flags(demo)
    demo.set_defaults(handler=_run_demo)


def _add_logging_flags(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--log-format",
        choices=("auto", "console", "json"),
        default="auto",
        help="stderr log format; auto = console on a terminal, json otherwise",
    )
    group.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="stderr log level (default: info)",
    )
    group.add_argument("-q", "--quiet", action="store_true", help="log errors only")


def _run_poll(args: argparse.Namespace) -> int:
    from .clock import SystemClock
    from .ids import describe, read_ids

    _setup_logging(args)
    config = Config(
        credentials=_credentials(args),
        base_url=args.base_url,
        concurrency=args.concurrency,
        rate=args.rate,
        min_delay=args.min_delay,
        max_delay=args.max_delay,
        deadline=args.deadline,
        request_timeout=args.request_timeout,
        once=args.once,
        allow_insecure_http=args.allow_insecure_http,
        ca_bundle=args.ca_bundle,
        state_file=args.state,
        metrics_file=args.metrics_file,
        seed=args.seed,
    )
    if not args.sources and not args.ids and sys.stdin.isatty():
        raise InputError(
            "no job ids: stdin is a terminal\n"
            "HINT: give a file (async-poller poll ids.txt), pipe ids in, or use --id N"
        )
    sources = args.sources or ([] if args.ids else ["-"])
    job_ids = read_ids(sources, ids=args.ids, input_format=args.input_format)
    if job_ids.invalid and not args.skip_invalid:
        listed = "\n".join("  " + describe(bad) for bad in job_ids.invalid[:MAX_LISTED_INVALID])
        more = len(job_ids.invalid) - MAX_LISTED_INVALID
        raise InputError(
            f"{len(job_ids.invalid)} invalid input line(s), nothing was polled:\n{listed}"
            + (f"\n  ... and {more} more" if more > 0 else "")
            + "\nHINT: fix them, or pass --skip-invalid to poll the valid ids"
        )
    if not job_ids.ids:
        raise InputError("no valid job id in the input")
    with _open_output(args.output) as stream:
        return asyncio.run(_stream(job_ids, config, stream, SystemClock(args.time_scale)))


async def _stream(job_ids: JobIds, config: Config, stream: BinaryIO, clock: Clock) -> int:
    from .events import JsonLinesSink, Summary
    from .scheduler import Interrupt, poll_jobs

    sink = JsonLinesSink(stream)
    interrupt = Interrupt()
    loop = asyncio.get_running_loop()
    for signum, code in ((signal.SIGINT, ExitCode.SIGINT), (signal.SIGTERM, ExitCode.SIGTERM)):
        loop.add_signal_handler(signum, interrupt.stop, code)
    exit_code = int(ExitCode.INCOMPLETE)
    async for event in poll_jobs(job_ids, config, clock=clock, interrupt=interrupt):
        try:
            sink.write(event)
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly. Point stdout at /dev/null so
            # that the interpreter's final flush does not complain either.
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
            interrupt.stop(ExitCode.INCOMPLETE)
        if isinstance(event, Summary):
            exit_code = event.exit_code
    return exit_code


@contextmanager
def _open_output(output: Path | None) -> Iterator[BinaryIO]:
    """stdout, or `output` opened for appending (so cron runs add to one log)."""
    if output is None:
        yield sys.stdout.buffer
        return
    try:
        stream = output.open("ab")
    except OSError as error:
        raise ConfigError(f"cannot open --output {output}: {error.strerror}") from None
    with stream:
        yield stream


def _credentials(args: argparse.Namespace) -> Credentials:
    if args.token_command:
        return Credentials(token_command=args.token_command)
    if args.refresh_token_file:
        return Credentials(refresh_token=Secret(_read_token_file(args.refresh_token_file)))
    if token := os.environ.get("LUCIDITY_REFRESH_TOKEN", "").strip():
        return Credentials(refresh_token=Secret(token))
    if token := os.environ.get("LUCIDITY_ACCESS_TOKEN", "").strip():
        return Credentials(access_token=Secret(token))
    raise ConfigError(
        "no credentials\nHINT: set LUCIDITY_REFRESH_TOKEN (or LUCIDITY_ACCESS_TOKEN), or use "
        "--refresh-token-file PATH or --token-command CMD"
    )


def _read_token_file(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(
                    f"permissions {stat.S_IMODE(mode):04o} for {path} are too open: "
                    f"the refresh token must be readable by you alone\nHINT: chmod 600 {path}"
                )
            text = handle.read(64 * 1024).decode("utf-8", "replace").strip()
    except OSError as error:
        raise ConfigError(f"cannot read --refresh-token-file {path}: {error.strerror}") from None
    if not text or any(c.isspace() for c in text):
        raise ConfigError(f"--refresh-token-file {path} must hold exactly one token")
    return text


def _run_report(args: argparse.Namespace) -> int:
    from .report import run_report

    return run_report(args)


def _run_simulate(args: argparse.Namespace) -> int:
    from .simulator.serve import run_simulate

    _setup_logging(args)
    return run_simulate(args)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    _setup_logging(args)
    return asyncio.run(
        run_demo(
            jobs=args.jobs, seed=args.seed, time_scale=args.time_scale, stdout=sys.stdout.buffer
        )
    )


def _setup_logging(args: argparse.Namespace) -> None:
    from .logs import configure_logging

    configure_logging(
        log_format=getattr(args, "log_format", "auto"),
        level=getattr(args, "log_level", "info"),
        quiet=getattr(args, "quiet", False),
    )


def _fail(error: Exception) -> None:
    print(f"{PROG}: error: {error}", file=sys.stderr)


def _argument(parse: Callable[[str], object]) -> Callable[[str], object]:
    """Adapt a parser raising ConfigError to argparse (which then prints its message)."""

    def convert(text: str) -> object:
        try:
            return parse(text)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value
