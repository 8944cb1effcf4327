"""The command line: the parser, dispatch to a command, and exit codes. A thin shell.

Each command lives in its own module and is imported when it runs: the parser alone loads
neither aiohttp nor rich, so `--help` and `--version` start fast. `poll` is in `cli_poll`
(flags) and `cli_poll_run` (running it); the flags commands share are in `cli_options`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import traceback
from collections.abc import Callable, Sequence
from importlib.metadata import version

from ..errors import ConfigError, InputError, OutputError, StateLocked
from ..outcome import ExitCode
from .options import (
    add_command,
    add_logging_flags,
    add_progress_flags,
    positive_float,
    positive_int,
    setup_logging,
    wrap_description,
)
from .poll_flags import add_poll_command

__all__ = ["PROG", "build_parser", "main", "subcommands"]

PROG = "async-poller"

EXAMPLES = """\
examples:
  # first contact: a simulated API, 50 jobs polled to the end in seconds
  async-poller demo

  # poll the ids in a file; keep only the results
  async-poller poll ids.txt | jq -c 'select(.event == "result")'

  # some ids of a saved Agent Install response, picked with jq (1.7+ keeps 64-bit ids exact)
  jq '[.data[] | select(.cloudProvider == "AWS") | .id]' response.json | async-poller poll -

  # from cron every 10 minutes, resuming from a state file
  */10 * * * * async-poller poll --state /var/lib/ap/state.db --deadline 9m /etc/ap/ids.txt

Run 'async-poller COMMAND --help' for a command's options and examples.
"""

SIMULATE_EXAMPLES = """\
examples:
  # a fast simulated API on port 8080 with 20 jobs; their ids go to ids.txt
  async-poller simulate --port 8080 --time-scale 60 --jobs 20 --jobs-file ids.txt

  # in another shell: the two variables it printed, then poll at the same time scale
  export LUCIDITY_BASE_URL=http://127.0.0.1:8080 LUCIDITY_REFRESH_TOKEN=...
  async-poller poll --time-scale 60 ids.txt

  # a flaky API: 10% of the answers are 503
  async-poller simulate --jobs 20 --fault-rate http_503=0.1

  # behind nginx limit_req rate=50r/m (no burst): 503 without Retry-After when too early
  async-poller simulate --jobs 20 --limiter bucket:1 --throttle-status 503 --no-retry-after
"""

DEMO_EXAMPLES = """\
examples:
  # the whole product in under a minute: live progress, then a summary
  async-poller demo

  # the events it writes, filtered with jq
  async-poller demo | jq -c 'select(.event == "result")'

  # more jobs, faster
  async-poller demo --jobs 200 --time-scale 120
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    _no_core_dumps()
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (ConfigError, InputError) as error:
        _fail(error)
        return ExitCode.USAGE
    except StateLocked as error:
        _fail(error)
        return ExitCode.LOCKED
    except OutputError as error:
        _fail(error)
        return ExitCode.OUTPUT
    except KeyboardInterrupt:  # Ctrl-C before polling began (e.g. while reading stdin)
        return ExitCode.SIGINT
    except Exception:  # a bug: say so, with the traceback (scrubbed), and a code of its own
        from ..redact import redact

        print(
            f"{PROG}: internal error, please report it with this output:\n"
            + redact(traceback.format_exc()),
            file=sys.stderr,
        )
        return ExitCode.INTERNAL


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every command, every flag, with help)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=wrap_description(
            "Poll many Lucidity agent-install jobs at once, within a shared request budget, "
            "and stream JSON-lines events to stdout (logs and progress go to stderr)."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {version('async-poller')}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    add_poll_command(commands)
    _add_report(commands)
    _add_simulate(commands)
    _add_demo(commands)
    return parser


def _add_report(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .report import REPORT_EXAMPLES, add_report_arguments

    report = add_command(
        commands,
        "report",
        summary="show what a state file knows: statuses, history, the audit trail",
        description="Show every job in a state file with its status, timestamps and reason, "
        "or one job's history. Works while a run is in progress.",
        examples=REPORT_EXAMPLES,
        handler=_run_report,
    )
    add_report_arguments(report)


def _add_simulate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..simulator.options import add_simulate_arguments

    simulate = add_command(
        commands,
        "simulate",
        summary="run the built-in Lucidity API simulator",
        description="Serve a simulated Lucidity API (status, install and token endpoints, rate "
        "limit, job lifecycles, faults, scaled time) until interrupted. Prints its base URL and "
        "a refresh token as shell assignments on stdout.",
        examples=SIMULATE_EXAMPLES,
        handler=_run_simulate,
    )
    add_simulate_arguments(simulate)


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = add_command(
        commands,
        "demo",
        summary="poll ~50 simulated jobs end to end (no account needed)",
        description="Start the simulator in-process, create jobs through its install endpoint "
        "and poll them to the end in scaled time. Real events go to stdout; live progress, then "
        "a summary (counts by status, failed jobs with their reasons, requests used) to stderr.",
        examples=DEMO_EXAMPLES,
        handler=_run_demo,
    )
    demo.add_argument(
        "--jobs", type=positive_int, default=50, metavar="N", help="jobs to create (default: 50)"
    )
    demo.add_argument(
        "--seed", type=int, default=7, metavar="N", help="simulator seed (default: 7)"
    )
    demo.add_argument(
        "--time-scale",
        type=positive_float,
        default=60.0,
        metavar="X",
        help="simulated seconds per real second (default: 60)",
    )
    add_logging_flags(demo)
    add_progress_flags(demo, heartbeat=False)


def _run_report(args: argparse.Namespace) -> int:
    from .report import run_report

    try:
        code = run_report(args)
        sys.stdout.flush()  # inside the try: a reader gone (`| head`) is not an error
    except BrokenPipeError:
        # Point stdout at /dev/null so that the interpreter's final flush is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    return code


def _run_simulate(args: argparse.Namespace) -> int:
    from ..simulator.serve import run_simulate

    setup_logging(args)
    return run_simulate(args)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    setup_logging(args)
    return asyncio.run(
        run_demo(
            jobs=args.jobs,
            seed=args.seed,
            time_scale=args.time_scale,
            progress=args.progress,
            stdout=sys.stdout.buffer,
        )
    )


def _no_core_dumps() -> None:
    """A crash must not leave the tokens in memory on disk: no core dumps, for us and for
    the token command we start (the hard limit stays, so a test run can lift it again)."""
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))


def _fail(error: Exception) -> None:
    print(f"{PROG}: error: {error}", file=sys.stderr)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every command's parser by name (argparse offers no public way to list them)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}
