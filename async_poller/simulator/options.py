"""The `simulate` command's flags. Importing this imports no aiohttp, so `--help` stays fast."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import parse_duration
from ..errors import ConfigError
from .faultplan import FAULT_KINDS

__all__ = ["add_simulate_arguments"]


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `simulate` command's flags to `parser`."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    add("--port", type=int, default=0, help="port to listen on; 0 picks a free one (default: 0)")
    add("--seed", type=int, default=0, help="seed for job ids, lifecycles and faults (default: 0)")
    add(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="simulated seconds per real second, e.g. 60 runs a minute per second (default: 1)",
    )
    add(
        "--rate-limit",
        type=int,
        default=50,
        metavar="N",
        help="requests allowed per rate window before 429 (default: %(default)s)",
    )
    add(
        "--rate-window",
        type=_duration,
        default="1m",
        metavar="D",
        help="length of the sliding rate-limit window (default: 1m)",
    )
    add(
        "--token-ttl",
        type=_duration,
        default="15m",
        metavar="D",
        help="lifetime of an access token (default: 15m)",
    )
    add("--jobs", type=int, default=0, metavar="N", help="create N jobs at startup (default: 0)")
    add(
        "--jobs-file",
        type=Path,
        metavar="PATH",
        help="write the ids of the --jobs to PATH, one per line, ready for `async-poller poll`; "
        "without it they go to stderr",
    )
    add(
        "--envelope",
        choices=("A", "B", "C"),
        default="A",
        help="JSON envelope of status answers: A success/data/error, B message/status/data, "
        "C bare object (default: A)",
    )
    add(
        "--fault-rate",
        type=_fault_rate,
        action="append",
        default=[],
        metavar="KIND=P",
        help=f"inject fault KIND into a share P of requests (repeatable); KIND is one of: "
        f"{', '.join(sorted(FAULT_KINDS))}",
    )


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _fault_rate(text: str) -> tuple[str, float]:
    kind, _, rate = text.partition("=")
    try:
        value = float(rate)
    except ValueError:
        value = -1.0
    if kind not in FAULT_KINDS or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"invalid fault rate {text!r}\nHINT: write KIND=P with P from 0 to 1, "
            "e.g. http_503=0.05; see --help for the kinds"
        )
    return kind, value
