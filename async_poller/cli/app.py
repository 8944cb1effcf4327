"""The command line: the parser, dispatch to a command, and the exit code of what escapes.

Each command is a module of the same shape: `add_parser` registers it with its flags, help
and examples, and `run` runs it. Building the parser loads neither aiohttp nor rich, so
`--help` and `--version` start fast: `poll` and `demo` keep their work in `poll_run` and
`demo_run`, imported when they run. The flags commands share are in `options`.
"""

from __future__ import annotations

import argparse
import resource
import sys
import traceback
from collections.abc import Callable, Sequence

from .. import __version__
from ..errors import AsyncPollerError
from ..outcome import ExitCode, exit_code_of
from . import demo, poll, report, simulate
from .options import (
    wrap_description,
)

__all__ = ["PROG", "build_parser", "main", "subcommands"]

PROG = "async-poller"

EXAMPLES = """\
examples:
  # first contact: a simulated API, 50 jobs polled to the end in seconds
  async-poller demo

  # poll the ids in a file; keep only the results
  async-poller poll ids.txt | jq -c 'select(.event == "result")'

  # some ids of a saved Agent Install response, picked with jq 1.7+ (1.6 rounds 64-bit ids,
  # and a rounded id can be another job's)
  jq '[.data[] | select(.cloudProvider == "AWS") | .id]' response.json | async-poller poll -

  # from cron every 10 minutes, resuming from a state file
  */10 * * * * async-poller poll --state /var/lib/ap/state.db --deadline 9m /etc/ap/ids.txt

Run 'async-poller COMMAND --help' for a command's options and examples.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    _no_core_dumps()
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except AsyncPollerError as error:  # raised before polling began: bad input, a lock
        _fail(error)
        return exit_code_of(error, started=False)
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
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in (poll, report, simulate, demo):
        command.add_parser(commands)
    return parser


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
