"""Running `async-poller poll`: flags -> Config and ids, then events to stdout until the end.

Imported only when `poll` runs, so the parser (and `--help`) never loads aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import sys
from contextlib import aclosing
from typing import BinaryIO

from .._engine.control import Interrupt
from .._engine.poll import poll_jobs
from ..clock import Clock, SystemClock
from ..config import DEFAULT_BASE_URL, Config, Credentials
from ..errors import ConfigError, InputError
from ..events import Summary
from ..ids import JobIds, format_invalid, read_ids
from ..outcome import ExitCode
from ..redact import Secret
from .options import setup_logging
from .output import open_output, relay
from .progress import open_status
from .secretfile import read_secret_file

__all__ = ["run_poll"]

MAX_LISTED_INVALID = 20


def run_poll(args: argparse.Namespace) -> int:
    """Poll what `args` asks for; returns the exit code. Raises ConfigError or InputError
    (exit 2) before anything is polled."""
    setup_logging(args)
    config = Config(
        credentials=_credentials(args),
        base_url=args.base_url or os.environ.get("LUCIDITY_BASE_URL") or DEFAULT_BASE_URL,
        concurrency=args.concurrency,
        rate=args.rate,
        burst=args.burst,
        thrifty=args.thrifty,
        budget_store=_budget_store(args.budget_store),
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
    job_ids = _job_ids(args)
    clock = SystemClock(args.time_scale)
    with open_output(args.output) as stream:
        return asyncio.run(_stream(job_ids, config, stream, clock, args))


def _budget_store(flag: str | None) -> str | None:
    """The store `--budget-store` names, else `ASYNC_POLLER_BUDGET_STORE`, else `auto`."""
    given = flag or os.environ.get("ASYNC_POLLER_BUDGET_STORE", "").strip() or "auto"
    if given == "none":
        return None
    if given == "auto":
        from .._pacing.tenant import default_store_path

        return str(default_store_path())
    return given


def _job_ids(args: argparse.Namespace) -> JobIds:
    if not args.sources and not args.ids and sys.stdin.isatty():
        raise InputError(
            "no job ids: stdin is a terminal\n"
            "HINT: give a file (async-poller poll ids.txt), pipe ids in, or use --id N"
        )
    sources = args.sources or ([] if args.ids else ["-"])
    job_ids = read_ids(sources, ids=args.ids, input_format=args.input_format)
    if job_ids.invalid and not args.skip_invalid:
        listed = "\n".join(
            "  " + format_invalid(bad) for bad in job_ids.invalid[:MAX_LISTED_INVALID]
        )
        more = len(job_ids.invalid) - MAX_LISTED_INVALID
        raise InputError(
            f"{len(job_ids.invalid)} invalid input line(s), nothing was polled:\n{listed}"
            + (f"\n  ... and {more} more" if more > 0 else "")
            + "\nHINT: fix them, or pass --skip-invalid to poll the valid ids"
        )
    if not job_ids.ids:
        raise InputError("no valid job id in the input")
    return job_ids


async def _stream(
    job_ids: JobIds, config: Config, stream: BinaryIO, clock: Clock, args: argparse.Namespace
) -> int:
    interrupt = Interrupt()
    loop = asyncio.get_running_loop()
    for signum, code in (
        (signal.SIGINT, ExitCode.SIGINT),
        (signal.SIGTERM, ExitCode.SIGTERM),
        (signal.SIGHUP, ExitCode.SIGHUP),  # an SSH session dropped: stop with a summary
    ):
        loop.add_signal_handler(signum, interrupt.stop, code)
    exit_code = int(ExitCode.INCOMPLETE)
    with open_status(
        args.progress, heartbeat_s=args.heartbeat, time_scale=args.time_scale, rate=config.rate
    ) as status:
        events = poll_jobs(
            job_ids,
            config,
            clock=clock,
            interrupt=interrupt,
            on_tick=status.on_tick if status else None,
            tick_s=status.tick_s if status else 1.0,
        )
        gone = functools.partial(interrupt.stop, ExitCode.INCOMPLETE)  # `| head`: stop quietly
        async with aclosing(events):  # an OutputError ends the run here, and closes it
            async for event in relay(events, stream, status, on_reader_gone=gone):
                if isinstance(event, Summary):
                    exit_code = event.exit_code
    return exit_code


def _credentials(args: argparse.Namespace) -> Credentials:
    if args.token_command:
        return Credentials(token_command=args.token_command)
    if args.refresh_token_file:
        token = read_secret_file(args.refresh_token_file, "--refresh-token-file")
        return Credentials(refresh_token=Secret(token))
    if token := os.environ.get("LUCIDITY_REFRESH_TOKEN", "").strip():
        return Credentials(refresh_token=Secret(token))
    if token := os.environ.get("LUCIDITY_ACCESS_TOKEN", "").strip():
        return Credentials(access_token=Secret(token))
    raise ConfigError(
        "no credentials\nHINT: set LUCIDITY_REFRESH_TOKEN (or LUCIDITY_ACCESS_TOKEN), or use "
        "--refresh-token-file PATH or --token-command CMD"
    )
