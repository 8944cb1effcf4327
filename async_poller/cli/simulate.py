"""`async-poller simulate`: the built-in Lucidity API simulator, served until interrupted."""

from __future__ import annotations

import argparse

from .options import add_command, setup_logging

__all__ = ["add_parser", "run"]

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


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..simulator.options import add_simulate_arguments

    simulate = add_command(
        commands,
        "simulate",
        summary="run the built-in Lucidity API simulator",
        description="Serve a simulated Lucidity API (status, install and token endpoints, rate "
        "limit, job lifecycles, faults, scaled time) until interrupted. Prints its base URL and "
        "a refresh token as shell assignments on stdout.",
        examples=SIMULATE_EXAMPLES,
        handler=run,
    )
    add_simulate_arguments(simulate)


def run(args: argparse.Namespace) -> int:
    from ..simulator.serve import run_simulate

    setup_logging(args)
    return run_simulate(args)
