"""The `simulate` command's flags. Importing this imports no aiohttp, so `--help` stays fast."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import parse_duration
from ..errors import ConfigError
from .faultplan import FAULT_KINDS
from .ratelimit import normalise_limiter
from .settings import THROTTLE_STATUSES

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
        help="requests allowed per rate window; more are refused (default: %(default)s)",
    )
    add(
        "--rate-window",
        type=_duration,
        default="1m",
        metavar="D",
        help="the rate-limit window: the sliding window's length, or the time a bucket takes "
        "to refill --rate-limit tokens (default: 1m)",
    )
    add(
        "--limiter",
        type=_limiter,
        default="window",
        metavar="window|bucket:B",
        help="how the rate limit is enforced: window, at most --rate-limit requests in any "
        "sliding window (the Lucidity API); bucket:B, a token bucket of B requests refilled "
        "at the rate limit, like an API gateway (bucket:1 is nginx limit_req with no burst, "
        "bucket:5 is burst=4 nodelay) (default: window)",
    )
    add(
        "--throttle-status",
        type=_throttle_status,
        default=429,
        metavar="429|503",
        help="the status of a refused request: 429 Too Many Requests, or 503 as nginx "
        "limit_req answers (default: 429)",
    )
    add(
        "--no-retry-after",
        dest="retry_after",
        action="store_false",
        help="refuse without a Retry-After header (nginx's default); otherwise it says in "
        "whole seconds when a request would be admitted",
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


def _limiter(text: str) -> str:
    try:
        return normalise_limiter(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _throttle_status(text: str) -> int:
    if text.strip() not in {str(status) for status in THROTTLE_STATUSES}:
        raise argparse.ArgumentTypeError(
            f"invalid throttle status {text!r}\nHINT: 429 (Too Many Requests, like the "
            "Lucidity API) or 503 (Service Unavailable, like nginx limit_req)"
        )
    return int(text)


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
