"""`async-poller demo`: the whole product in under a minute, with no account.

The flags are here; the demo itself is in `demo_run`, imported when it runs.
"""

from __future__ import annotations

import argparse
import sys

from .options import (
    add_command,
    add_logging_flags,
    add_progress_flags,
    positive_float,
    positive_int,
    setup_logging,
)

__all__ = ["add_parser", "run"]

DEMO_EXAMPLES = """\
examples:
  # the whole product in under a minute: live progress, then a summary
  async-poller demo

  # the events it writes, filtered with jq
  async-poller demo | jq -c 'select(.event == "result")'

  # more jobs, faster
  async-poller demo --jobs 200 --time-scale 120
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = add_command(
        commands,
        "demo",
        summary="poll ~50 simulated jobs end to end (no account needed)",
        description="Start the simulator in-process, create jobs through its install endpoint "
        "and poll them to the end in scaled time. Real events go to stdout; live progress, then "
        "a summary (counts by status, failed jobs with their reasons, requests used) to stderr.",
        examples=DEMO_EXAMPLES,
        handler=run,
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


def run(args: argparse.Namespace) -> int:
    import asyncio

    from .demo_run import run_demo

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
