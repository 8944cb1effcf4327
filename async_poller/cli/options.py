"""Argument types and the flags several commands share: logging, progress and heartbeat.

Light on purpose: the parser is built for `--help` too, which must not load aiohttp.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable

from ..config import parse_duration
from ..errors import ConfigError

__all__ = [
    "HEARTBEAT_DEFAULT",
    "add_logging_flags",
    "add_progress_flags",
    "argument",
    "positive_float",
    "positive_int",
    "setup_logging",
    "wrap_description",
]

HEARTBEAT_DEFAULT = "1m"
DESCRIPTION_WIDTH = 90


def wrap_description(text: str) -> str:
    """A command's description, wrapped here: its formatter keeps the examples' layout as is."""
    return textwrap.fill(text, DESCRIPTION_WIDTH)


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    summary: str,
    description: str,
    examples: str,
    handler: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    """Register a subcommand with its one-line summary, wrapped description and examples."""
    parser = commands.add_parser(
        name,
        help=summary,
        description=wrap_description(description),
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def add_logging_flags(group: argparse._ActionsContainer) -> None:
    """`--log-format`, `--log-level` and `-q`: how much goes to stderr, and in which form."""
    group.add_argument(
        "--log-format",
        choices=("auto", "console", "json"),
        default="auto",
        help="stderr log format: console for people, json for machines; auto = console on "
        "a terminal, json otherwise (default: %(default)s)",
    )
    group.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="stderr log level; debug also logs every request, tokens masked "
        "(default: %(default)s)",
    )
    group.add_argument("-q", "--quiet", action="store_true", help="log errors only (default: off)")


def add_progress_flags(group: argparse._ActionsContainer, *, heartbeat: bool) -> None:
    """`--progress`, and `--heartbeat` where a run can outlast a CI system's patience."""
    group.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="a live progress display on stderr (jobs final by status, pending, requests "
        "per minute against the budget, throttling, time to the deadline); auto = only when "
        "stderr is a terminal (default: %(default)s)",
    )
    if heartbeat:
        group.add_argument(
            "--heartbeat",
            type=argument(parse_duration),
            default=parse_duration(HEARTBEAT_DEFAULT),
            metavar="D",
            help="without the progress display, log a one-line status every D, so CI "
            "systems that kill silent jobs do not; 0 turns it off; hidden by -q "
            f"(default: {HEARTBEAT_DEFAULT})",
        )


def setup_logging(args: argparse.Namespace) -> None:
    """Configure structlog on stderr from the logging flags (defaults where a command has none)."""
    from ..logs import configure_logging

    configure_logging(
        log_format=getattr(args, "log_format", "auto"),
        level=getattr(args, "log_level", "info"),
        quiet=getattr(args, "quiet", False),
    )


def argument(parse: Callable[[str], object]) -> Callable[[str], object]:
    """Adapt a parser raising ConfigError to argparse (which then prints its message)."""

    def convert(text: str) -> object:
        try:
            return parse(text)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def positive_int(text: str) -> int:
    """A whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value
